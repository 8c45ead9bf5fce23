#!/usr/bin/python3
"""Offline seeding of the lab Samba AD directory (helper of scripts/lab-dc).

Runs with Samba STOPPED, directly against DIR/private/sam.ldb through Samba's own
LDB modules (samldb, password_hash, linked attributes, ACLs all apply), in ONE
transaction. Idempotent: every object that already exists is kept, missing objects
and missing group members are added, so `seed N` can be re-run or grown.

Inputs (environment, never argv, so passwords do not show in `ps`):
  ADLAB_DIR, ADLAB_SMB_CONF, ADLAB_N, ADLAB_USER_PASSWORD, ADLAB_SVC_PASSWORD
Output: DIR/seed.env (KEY=VALUE lines read by `lab-dc env`).

Bulk users get their password as a precomputed NT hash (copied from a template
account whose password was set the normal way) through Samba's
DSDB_CONTROL_BYPASS_PASSWORD_HASH control: the normal path derives Kerberos AES
keys (PBKDF2) and costs ~28 ms per user on 2 cores, the bypass ~3 ms. LDAP simple
binds only need the NT hash; Kerberos for bulk users falls back to RC4.
"""
import datetime
import os
import random
import sys
import time
import unicodedata

import ldb
from samba import dsdb
from samba.auth import system_session
from samba.dcerpc import security
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.sd_utils import SDUtils

DIR = os.environ["ADLAB_DIR"]
SMB_CONF = os.environ["ADLAB_SMB_CONF"]
N = int(os.environ["ADLAB_N"])
USER_PW = os.environ["ADLAB_USER_PASSWORD"]
SVC_PW = os.environ["ADLAB_SVC_PASSWORD"]

DNS_DOMAIN = "corp.example.test"
BASE = "DC=corp,DC=example,DC=test"
CORP = "OU=Corp," + BASE
USERS = "OU=Users," + CORP
GROUPS = "OU=Groups," + CORP
SVC_OU = "OU=Service Accounts," + CORP
DISABLED = "OU=Disabled," + CORP
CONTACTS = "OU=Contacts," + CORP

GT_GLOBAL_SEC = -2147483646      # 0x80000002
GT_DOMLOCAL_SEC = -2147483644    # 0x80000004
GT_UNIVERSAL_SEC = -2147483640   # 0x80000008
GT_UNIVERSAL_DIST = 8            # universal distribution

UF_NORMAL = 0x200
UF_DISABLED = 0x2
UF_DONT_EXPIRE = 0x10000

BATCH = int(os.environ.get("ADLAB_SEED_BATCH", "250"))
BYPASS = ["local_oid:%s:0" % dsdb.DSDB_CONTROL_BYPASS_PASSWORD_HASH_OID]


def log(msg):
    print("lab-seed: " + msg, flush=True)


def filetime(dt):
    epoch = datetime.datetime(1601, 1, 1, tzinfo=datetime.timezone.utc)
    return str(int((dt - epoch).total_seconds()) * 10_000_000)


def now_ft():
    return filetime(datetime.datetime.now(datetime.timezone.utc))


def pw_value(pw):
    return ('"%s"' % pw).encode("utf-16-le")


# --------------------------------------------------------------------------- data
DEPARTMENTS = [
    # (OU name, department, titles)
    ("Engineering", "Engineering", ["Software Engineer", "Senior Software Engineer",
                                    "Staff Engineer", "Engineering Manager", "SRE"]),
    ("Sales", "Sales", ["Account Executive", "Sales Manager", "Sales Engineer"]),
    ("Marketing", "Marketing", ["Marketing Specialist", "Content Manager", "Growth Lead"]),
    ("Finance", "Finance", ["Accountant", "Financial Analyst", "Controller"]),
    ("Human Resources", "Human Resources", ["HR Partner", "Recruiter", "HR Manager"]),
    ("Operations", "Operations", ["Operations Analyst", "Facilities Manager", "Buyer"]),
    ("Support", "Customer Support", ["Support Engineer", "Support Lead"]),
]
CONTRACTORS = "OU=Contractors,OU=Engineering," + USERS  # deeper nesting level

CITIES = [
    # l, st, c, co, countryCode, postalCode, street, phone prefix
    ("Paris", "Île-de-France", "FR", "France", "250", "75008", "12 rue de la Paix", "+33 1 55 "),
    ("Berlin", "Berlin", "DE", "Germany", "276", "10117", "Friedrichstraße 43", "+49 30 901 "),
    ("New York", "NY", "US", "United States", "840", "10001", "350 Fifth Avenue", "+1 212 555 "),
    ("London", "England", "GB", "United Kingdom", "826", "EC1A 1BB", "1 St Martin's Le Grand", "+44 20 7946 "),
    ("Kraków", "Małopolskie", "PL", "Poland", "616", "31-001", "ul. Floriańska 15", "+48 12 345 "),
    ("Stockholm", "Stockholm", "SE", "Sweden", "752", "111 52", "Drottninggatan 71", "+46 8 508 "),
    ("Shanghai", "Shanghai", "CN", "China", "156", "200000", "88 Century Avenue", "+86 21 5555 "),
]
FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
         "David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
         "Thomas", "Sarah", "Charles", "Karen", "Amélie", "François", "Jürgen", "Søren",
         "Ingrid", "Małgorzata", "Paweł", "Åsa", "Björn", "Chloé", "Noël", "Zoë", "Renée",
         "Aarav", "Priya", "Wei", "Mei", "Hiroshi", "Yuki", "Olumide", "Fatima", "Mohammed"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
        "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Taylor",
        "Thomas", "Moore", "Martin", "Lee", "Thompson", "Müller", "Schröder", "Dupont",
        "Lefèvre", "Nowak", "Wiśniewski", "Kowalczyk", "Ångström", "Öberg", "Østergaard",
        "O'Brien", "García-Márquez", "Nguyen", "Kim", "Tanaka", "Sato", "Okafor", "Haddad",
        "Chen", "Wang", "Patel", "Singh"]
# Fixed people at the head of the list (users 1..n): unicode edge cases.
FIXED_PEOPLE = [
    ("Zoë", "Ångström", "zoe.angstrom"),
    ("Łukasz", "Żółć", "lukasz.zolc"),
    ("雷", "李", "li.lei"),                 # displayName 李雷 (family name first)
    ("José", "Müller-Lüdenscheidt", "jose.muller"),
    ("Björk", "Guðmundsdóttir", "bjork.gudmundsdottir"),
    ("Χρήστος", "Παπαδόπουλος", "christos.papadopoulos"),
    ("Ølaf", "Særensen", "olaf.saerensen"),
    ("Siobhán", "Ó Súilleabháin", "siobhan.osullivan"),
]
TRANSLIT = {"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ð": "d",
            "Ð": "D", "þ": "th", "ß": "ss", "'": "", " ": "", "-": ""}


def ascii_slug(s):
    s = "".join(TRANSLIT.get(ch, ch) for ch in s)
    s = unicodedata.normalize("NFKD", s)
    return "".join(ch for ch in s if ch.isascii() and ch.isalnum()).lower()


def display_name(given, sn):
    if any("\u4e00" <= ch <= "\u9fff" for ch in given + sn):
        return sn + given
    return "%s %s" % (given, sn)


def dn_escape(value):
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def build_people(n):
    """Deterministic list of n regular users (same prefix for any n)."""
    people = []
    cn_seen = set()
    dept_members = {d[0]: [] for d in DEPARTMENTS}
    for i in range(1, n + 1):
        rnd = random.Random(i * 7919)
        if i <= len(FIXED_PEOPLE):
            given, sn, sam = FIXED_PEOPLE[i - 1]
        else:
            given, sn = rnd.choice(FIRST), rnd.choice(LAST)
            stem = "%s.%s" % (ascii_slug(given)[:8], ascii_slug(sn)[:8])
            sam = stem[: 20 - len(str(i))] + str(i)
        dept_ou, dept, titles = DEPARTMENTS[i % len(DEPARTMENTS)]
        ou = "OU=%s,%s" % (dept_ou, USERS)
        if dept_ou == "Engineering" and i % 10 == 3:
            ou = CONTRACTORS
        disp = display_name(given, sn)
        cn = disp
        if (cn.lower(), ou.lower()) in cn_seen:
            cn = "%s %d" % (disp, i)
        cn_seen.add((cn.lower(), ou.lower()))
        city = CITIES[rnd.randrange(len(CITIES))]
        pos = len(dept_members[dept_ou])
        dept_members[dept_ou].append(i)
        # manager tree inside the department, fan-out 8; the head has no manager
        mgr = dept_members[dept_ou][(pos - 1) // 8] if pos > 0 else None
        title = titles[0] if pos else "Head of " + dept
        if pos and rnd.random() < 0.3:
            title = rnd.choice(titles)
        people.append(dict(
            i=i, given=given, sn=sn, sam=sam, cn=cn, disp=disp, ou=ou,
            dn="CN=%s,%s" % (dn_escape(cn), ou), dept_ou=dept_ou, dept=dept,
            title=title, city=city, mgr=mgr, contractor=(ou == CONTRACTORS)))
    return people


def user_attrs(p, by_index):
    l, st, c, co, cc, postal, street, phone = p["city"]
    rnd = random.Random(p["i"] * 104729)
    a = {
        "objectClass": "user",
        "sAMAccountName": p["sam"],
        "userPrincipalName": "%s@%s" % (p["sam"], DNS_DOMAIN),
        "givenName": p["given"], "sn": p["sn"], "displayName": p["disp"],
        "mail": "%s@%s" % (p["sam"], DNS_DOMAIN),
        "title": p["title"], "department": p["dept"], "company": "Example Corp",
        "employeeID": "E%06d" % p["i"],
        "l": l, "st": st, "c": c, "co": co, "countryCode": cc,
        "postalCode": postal, "streetAddress": street,
        "telephoneNumber": phone + "%04d" % (p["i"] % 10000),
        "mobile": "+%d 7%03d %06d" % (rnd.choice([33, 49, 1, 44, 48, 46, 86]),
                                       rnd.randrange(1000), rnd.randrange(10 ** 6)),
        "description": "%s, %s (%s)%s" % (p["title"], p["dept"], l,
                                          " - contractor" if p["contractor"] else ""),
        "userAccountControl": str(UF_NORMAL),
    }
    if p["contractor"]:
        a["employeeType"] = "Contractor"
    else:
        a["employeeType"] = "Employee"
    if p["mgr"] is not None:
        a["manager"] = by_index[p["mgr"]]["dn"]
    return a


# --------------------------------------------------------------------------- main
def main():
    t0 = time.time()
    lp = LoadParm()
    lp.load(SMB_CONF)
    # FLG_NOSYNC: no fsync per commit (a crash mid-seed means `lab-dc reset`)
    db = SamDB(url=os.path.join(DIR, "private", "sam.ldb"),
               session_info=system_session(), lp=lp, flags=ldb.FLG_NOSYNC)
    domain_sid = str(db.get_domain_sid())

    existing = set()
    for m in db.search(CORP, scope=ldb.SCOPE_SUBTREE, expression="(objectClass=*)",
                       attrs=["dn"]) if exists(db, CORP) else []:
        existing.add(m.dn.get_casefold())
    log("opened sam.ldb (%d objects already under OU=Corp)" % len(existing))

    corp_key = ldb.Dn(db, CORP).get_casefold()
    added = {"ou": 0, "user": 0, "group": 0, "contact": 0, "member": 0}

    def add(dn, attrs, controls=None, kind=None):
        key = ldb.Dn(db, dn).get_casefold()
        if key in existing or (not key.endswith(corp_key) and exists(db, dn)):
            return False
        msg = dict(attrs)
        msg["dn"] = dn
        db.add(msg, controls=controls or [])
        existing.add(key)
        if kind:
            added[kind] += 1
        return True

    def add_members(group_dn, member_dns):
        cur = db.search(group_dn, scope=ldb.SCOPE_BASE, attrs=["member"])[0]
        have = {ldb.Dn(db, str(v)).get_casefold() for v in cur.get("member", [])}
        new = []
        for d in member_dns:
            k = ldb.Dn(db, d).get_casefold()
            if k not in have:
                have.add(k)
                new.append(d)
        if new:
            m = ldb.Message()
            m.dn = ldb.Dn(db, group_dn)
            m["member"] = ldb.MessageElement(new, ldb.FLAG_MOD_ADD, "member")
            db.modify(m)
            added["member"] += len(new)

    db.transaction_start()
    try:
        # ---- domain password policy: long max age so a lab of any age does not
        # see every account's password expire (Samba default is 42 days).
        m = ldb.Message()
        m.dn = ldb.Dn(db, BASE)
        m["maxPwdAge"] = ldb.MessageElement(str(-365 * 24 * 3600 * 10 ** 7),
                                            ldb.FLAG_MOD_REPLACE, "maxPwdAge")
        db.modify(m)

        # ---- OUs
        ous = [CORP, USERS, GROUPS, SVC_OU, DISABLED, CONTACTS]
        ous += ["OU=%s,%s" % (d[0], USERS) for d in DEPARTMENTS]
        ous.append(CONTRACTORS)
        for ou in ous:
            add(ou, {"objectClass": "organizationalUnit",
                     "description": "ADLAB test OU"}, kind="ou")

        # ---- special accounts (password set the normal way: full key set)
        S = {}

        def special(sam, given, sn, ou=USERS, uac=UF_NORMAL, extra=None, pw=USER_PW, cn=None):
            cn = cn or "%s %s" % (given, sn)
            dn = "CN=%s,%s" % (dn_escape(cn), ou)
            a = {"objectClass": "user", "sAMAccountName": sam,
                 "userPrincipalName": "%s@%s" % (sam, DNS_DOMAIN),
                 "givenName": given, "sn": sn, "displayName": cn,
                 "mail": "%s@%s" % (sam, DNS_DOMAIN), "company": "Example Corp",
                 "description": "ADLAB special test account: " + sam,
                 "userAccountControl": str(uac), "unicodePwd": pw_value(pw)}
            a.update(extra or {})
            add(dn, a, kind="user")
            S[sam] = dn
            return dn

        special("neverloggedon.user", "Never", "LoggedOn")   # also the NT-hash template
        special("loggedon.user", "Logged", "On")
        special("disabled.user", "Disabled", "User", ou=DISABLED, uac=UF_NORMAL | UF_DISABLED)
        special("locked.user", "Locked", "User")
        special("expired.user", "Expired", "User", extra={
            "accountExpires": filetime(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))})
        special("neverexpires.user", "NeverExpires", "User", uac=UF_NORMAL | UF_DONT_EXPIRE)
        special("mustchange.user", "MustChange", "User")
        special("admin.alice", "Alice", "Admin", extra={"title": "Domain Administrator",
                                                        "department": "IT"})
        special("primary.user", "Primary", "User")
        special("svc-sync", "svc", "sync", ou=SVC_OU, uac=UF_NORMAL | UF_DONT_EXPIRE,
                pw=SVC_PW, cn="svc-sync", extra={"description": "Identity connector read-only sync account"})
        special("svc-app", "svc", "app", ou=SVC_OU, uac=UF_NORMAL | UF_DONT_EXPIRE, cn="svc-app", extra={
            "servicePrincipalName": ["HTTP/app.%s" % DNS_DOMAIN, "HTTP/app"],
            "description": "Application service account (has SPNs)"})

        tmpl = db.search(S["neverloggedon.user"], scope=ldb.SCOPE_BASE,
                         attrs=["unicodePwd"])[0]
        nt_hash = tmpl["unicodePwd"][0]

        # password expired: pwdLastSet 400 days ago (> maxPwdAge 365 d); only
        # settable through the hash-bypass control (normal path allows 0/-1 only)
        old = filetime(datetime.datetime.now(datetime.timezone.utc)
                       - datetime.timedelta(days=400))
        dn = "CN=PwdExpired User,%s" % USERS
        add(dn, {"objectClass": "user", "sAMAccountName": "pwdexpired.user",
                 "userPrincipalName": "pwdexpired.user@" + DNS_DOMAIN,
                 "givenName": "PwdExpired", "sn": "User", "displayName": "PwdExpired User",
                 "description": "ADLAB special test account: pwdexpired.user",
                 "userAccountControl": str(UF_NORMAL), "unicodePwd": nt_hash,
                 "pwdLastSet": old}, controls=BYPASS, kind="user")
        S["pwdexpired.user"] = dn

        # must change password at next logon
        m = ldb.Message()
        m.dn = ldb.Dn(db, S["mustchange.user"])
        m["pwdLastSet"] = ldb.MessageElement("0", ldb.FLAG_MOD_REPLACE, "pwdLastSet")
        db.modify(m)

        # ---- bulk users
        people = build_people(N)
        by_index = {p["i"]: p for p in people}
        t1 = time.time()
        stamp = now_ft()
        n_new = 0
        for p in people:
            a = user_attrs(p, by_index)
            a["unicodePwd"] = nt_hash
            a["pwdLastSet"] = stamp
            if add(p["dn"], a, controls=BYPASS, kind="user"):
                n_new += 1
                if n_new % BATCH == 0:      # big transactions get slower per entry
                    db.transaction_commit()
                    db.transaction_start()
        log("bulk users: %d requested, %d added in %.1fs" % (N, n_new, time.time() - t1))

        # ---- contacts (non-user members of a distribution list)
        contacts = []
        for cn, mail in [("Partner Newsletter", "newsletter@partner.example"),
                         ("Auditor Contact", "audit@auditor.example")]:
            dn = "CN=%s,%s" % (cn, CONTACTS)
            add(dn, {"objectClass": "contact", "displayName": cn, "mail": mail,
                     "description": "ADLAB external contact"}, kind="contact")
            contacts.append(dn)

        # ---- groups
        def group(name, gt, desc, ou=GROUPS, extra=None):
            dn = "CN=%s,%s" % (name, ou)
            a = {"objectClass": "group", "sAMAccountName": name, "groupType": str(gt),
                 "description": desc}
            a.update(extra or {})
            add(dn, a, kind="group")
            return dn

        eng = [p for p in people if p["dept_ou"] == "Engineering"]
        G = {}
        G["GG-AllStaff"] = group("GG-AllStaff", GT_GLOBAL_SEC,
                                 "All staff (large group: > 1500 members)")
        G["GG-Engineering"] = group("GG-Engineering", GT_GLOBAL_SEC, "Engineering (nested)")
        G["GG-Backend"] = group("GG-Backend", GT_GLOBAL_SEC, "Backend team, nested in GG-Engineering")
        G["GG-Backend-Oncall"] = group("GG-Backend-Oncall", GT_GLOBAL_SEC,
                                       "On-call rota, nested in GG-Backend")
        G["GG-Frontend"] = group("GG-Frontend", GT_GLOBAL_SEC, "Frontend team, nested in GG-Engineering")
        for d in DEPARTMENTS[1:]:
            G["GG-" + d[0].replace(" ", "")] = group(
                "GG-" + d[0].replace(" ", ""), GT_GLOBAL_SEC, "%s department" % d[1])
        G["DL-Newsletter"] = group("DL-Newsletter", GT_UNIVERSAL_DIST,
                                   "Universal distribution list (groupType 8)",
                                   extra={"mail": "newsletter@" + DNS_DOMAIN})
        G["UG-Global-Admins"] = group("UG-Global-Admins", GT_UNIVERSAL_SEC,
                                      "Universal security group")
        G["DL-FileShare-Read"] = group("DL-FileShare-Read", GT_DOMLOCAL_SEC,
                                       "Domain-local security group")
        G["GG-Primary"] = group("GG-Primary", GT_GLOBAL_SEC,
                                "Primary group of primary.user (primaryGroupID)")
        G["GG-Empty"] = group("GG-Empty", GT_GLOBAL_SEC, "Group without members")

        staff = [p["dn"] for p in people] + [S[s] for s in (
            "neverloggedon.user", "loggedon.user", "disabled.user", "locked.user",
            "expired.user", "neverexpires.user", "mustchange.user", "admin.alice",
            "primary.user", "pwdexpired.user")]
        add_members(G["GG-AllStaff"], staff)
        backend = [p["dn"] for k, p in enumerate(eng) if k % 2 == 0]
        frontend = [p["dn"] for k, p in enumerate(eng) if k % 2 == 1]
        add_members(G["GG-Backend-Oncall"], backend[:5])
        add_members(G["GG-Backend"], backend + [G["GG-Backend-Oncall"]])
        add_members(G["GG-Frontend"], frontend)
        add_members(G["GG-Engineering"], [G["GG-Backend"], G["GG-Frontend"]]
                    + [p["dn"] for p in eng if p["mgr"] is None])
        for d in DEPARTMENTS[1:]:
            add_members(G["GG-" + d[0].replace(" ", "")],
                        [p["dn"] for p in people if p["dept_ou"] == d[0]])
        add_members(G["DL-Newsletter"], [p["dn"] for p in people[:50]] + contacts)
        add_members(G["UG-Global-Admins"], [S["admin.alice"], G["GG-Backend-Oncall"]])
        add_members(G["DL-FileShare-Read"], [G["GG-Engineering"], G["GG-Finance"],
                                             G["UG-Global-Admins"], S["disabled.user"]])
        add_members("CN=Domain Admins,CN=Users," + BASE, [S["admin.alice"]])

        # ---- primaryGroupID: member first (AD rule), then switch the primary group
        # (once primaryGroupID points at GG-Primary, Samba, like AD, drops the explicit
        # `member` value: the membership is implied by primaryGroupID only)
        prim = db.search(G["GG-Primary"], scope=ldb.SCOPE_BASE, attrs=["objectSid"])[0]
        prim_rid = str(ndr_sid(prim["objectSid"][0])).rsplit("-", 1)[1]
        cur = db.search(S["primary.user"], scope=ldb.SCOPE_BASE, attrs=["primaryGroupID"])[0]
        if str(cur["primaryGroupID"][0]) != prim_rid:
            add_members(G["GG-Primary"], [S["primary.user"]])
            m = ldb.Message()
            m.dn = ldb.Dn(db, S["primary.user"])
            m["primaryGroupID"] = ldb.MessageElement(prim_rid, ldb.FLAG_MOD_REPLACE,
                                                     "primaryGroupID")
            db.modify(m)
            log("primary.user primaryGroupID 513 -> %s (GG-Primary)" % prim_rid)

        # ---- fine-grained password policy: lockout only for locked.user
        pso_dn = "CN=ADLAB-Lockout,CN=Password Settings Container,CN=System," + BASE
        minutes = lambda x: str(-int(x * 60 * 10 ** 7))
        add(pso_dn, {
            "objectClass": "msDS-PasswordSettings",
            "msDS-PasswordSettingsPrecedence": "10",
            "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
            "msDS-PasswordHistoryLength": "0",
            "msDS-MinimumPasswordLength": "7",
            "msDS-PasswordComplexityEnabled": "TRUE",
            "msDS-MinimumPasswordAge": "0",
            "msDS-MaximumPasswordAge": minutes(365 * 24 * 60),
            "msDS-LockoutThreshold": "3",
            "msDS-LockoutObservationWindow": minutes(30),
            "msDS-LockoutDuration": minutes(1000 * 24 * 60),   # ~2.7 years
            "msDS-PSOAppliesTo": S["locked.user"],
        })

        # ---- svc-sync: "Read all user information" style delegation on OU=Corp
        svc = db.search(S["svc-sync"], scope=ldb.SCOPE_BASE, attrs=["objectSid"])[0]
        svc_sid = str(ndr_sid(svc["objectSid"][0]))
        sdu = SDUtils(db)
        ace = "(A;CI;RPLCLORC;;;%s)" % svc_sid
        if svc_sid not in sdu.get_sd_as_sddl(CORP):
            sdu.dacl_add_ace(CORP, ace)
            log("granted %s on OU=Corp to svc-sync (%s)" % (ace, svc_sid))

        db.transaction_commit()
    except Exception:
        db.transaction_cancel()
        raise

    # ---- summary for `lab-dc env`
    def count(base, expr):
        return len(db.search(base, scope=ldb.SCOPE_SUBTREE, expression=expr, attrs=["dn"]))

    big = db.search(G["GG-AllStaff"], scope=ldb.SCOPE_BASE, attrs=["member"])[0]
    big_n = len(big["member"])
    total_users = count(CORP, "(&(objectCategory=person)(objectClass=user))")
    total_groups = count(CORP, "(objectClass=group)")
    info = {
        "ADLAB_SEEDED_USERS": str(N),
        "ADLAB_TOTAL_USERS": str(total_users),
        "ADLAB_TOTAL_GROUPS": str(total_groups),
        "ADLAB_BIG_GROUP_DN": G["GG-AllStaff"],
        "ADLAB_BIG_GROUP_MEMBERS": str(big_n),
        "ADLAB_PRIMARY_USER_DN": S["primary.user"],
        "ADLAB_PRIMARY_GROUP_DN": G["GG-Primary"],
        "ADLAB_PRIMARY_GROUP_RID": prim_rid,
        "ADLAB_SVC_DN": S["svc-sync"],
        "ADLAB_SVC_SID": svc_sid,
        "ADLAB_DOMAIN_SID": domain_sid,
    }
    tmp = os.path.join(DIR, "seed.env.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for k, v in info.items():
            f.write("%s=%s\n" % (k, v))
    os.replace(tmp, os.path.join(DIR, "seed.env"))
    log("added %s; now %d users, %d groups under OU=Corp; %s has %d members (%.1fs)"
        % (", ".join("%d %s" % (v, k) for k, v in added.items()), total_users,
           total_groups, "GG-AllStaff", big_n, time.time() - t0))


def exists(db, dn):
    try:
        db.search(dn, scope=ldb.SCOPE_BASE, attrs=["dn"])
        return True
    except ldb.LdbError as e:
        if e.args[0] == ldb.ERR_NO_SUCH_OBJECT:
            return False
        raise


def ndr_sid(raw):
    from samba.ndr import ndr_unpack
    return ndr_unpack(security.dom_sid, raw)


if __name__ == "__main__":
    try:
        main()
    except ldb.LdbError as e:
        print("lab-seed: ERROR: LDB error %s: %s" % (e.args[0], e.args[1]), file=sys.stderr)
        sys.exit(1)
