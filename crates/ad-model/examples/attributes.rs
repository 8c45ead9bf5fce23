//! Prints the attributes the connector asks the DC for, one line per kind
//! (`users: objectGUID objectSid …`), so a benchmark can have `ldapsearch` read exactly the
//! same: `cargo run -q -p ad-model --example attributes`.

fn main() {
    println!("users: {}", ad_model::User::ATTRIBUTES.join(" "));
    println!("groups: {}", ad_model::Group::ATTRIBUTES.join(" "));
}
