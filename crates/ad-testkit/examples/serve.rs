//! Serve a synthetic company over plain LDAP on 127.0.0.1 until killed: for trying
//! `ad-connector run`, `status` and the telemetry endpoints without a directory.
//!
//! `cargo run -p ad-testkit --example serve -- [USERS]` prints a `[source]` section to paste
//! into a configuration file (plain LDAP on loopback, so `allow_plain_ldap = true`).
#![forbid(unsafe_code)]

use ad_testkit::{
    Company, CompanyOptions, SERVICE_ACCOUNT_PASSWORD, SERVICE_ACCOUNT_UPN, ServerOptions,
    TestServer,
};

fn main() -> std::process::ExitCode {
    let users = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 300,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: serve [USERS]  (a whole number of users, default 300)");
            return std::process::ExitCode::from(2);
        }
    };
    let directory = Company::generate(CompanyOptions {
        users,
        reference_time: chrono::Utc::now(),
        ..CompanyOptions::default()
    });
    let server = match TestServer::start(directory, ServerOptions::default()) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot start the in-process directory: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "[source]\nurl = {:?}\nbind = {:?}\npassword = {:?}\nstarttls = false\nallow_plain_ldap = true",
        server.url(),
        SERVICE_ACCOUNT_UPN,
        SERVICE_ACCOUNT_PASSWORD
    );
    eprintln!("serving {users} users on {} until killed", server.url());
    loop {
        std::thread::park();
    }
}
