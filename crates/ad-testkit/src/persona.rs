//! Deterministic people: a tiny seeded PRNG and the name, place and job lists the company and
//! generated directories draw from. Everything here is a pure function of (seed, index), so the
//! same seed always yields the same directory on every machine and Rust version.

/// SplitMix64: small, fast, and stable across versions (unlike `rand`'s `StdRng`).
#[derive(Debug, Clone)]
pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x6a09_e667_f3bc_c908)
    }

    /// An independent stream for one index (used by generated entries).
    pub(crate) fn for_index(seed: u64, index: u64) -> Self {
        let mut p = Self::new(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        p.next_u64();
        p
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `per_mille / 1000`.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// One item of a non-empty list.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let len = u64::try_from(items.len()).unwrap_or(u64::MAX);
        let i = usize::try_from(self.below(len)).unwrap_or(0);
        &items[i.min(items.len().saturating_sub(1))]
    }

    pub(crate) fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        out
    }

    /// A random (version 4 shaped) UUID.
    pub(crate) fn uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.bytes16()).into_uuid()
    }
}

pub(crate) const GIVEN_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Olivia",
    "Noah",
    "Emma",
    "Liam",
    "Ava",
    "Ethan",
    "Sophia",
    "Lucas",
    "Mia",
    "Mason",
    "Priya",
    "Arjun",
    "Wei",
    "Mei",
    "Omar",
    "Fatima",
    "Hiroshi",
    "Yuki",
    "Carlos",
    "Lucia",
];

pub(crate) const SURNAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Patel",
    "Shah",
    "Chen",
    "Wang",
    "Kim",
    "Tanaka",
    "Sato",
    "Silva",
    "Rossi",
    "Novak",
    "Kowalski",
    "Dubois",
    "Schmidt",
    "Fischer",
    "Jansen",
    "O'Brien",
    "Murphy",
    "Kelly",
    "Cohen",
    "Levy",
];

/// People whose names exercise UTF-8 end to end (accents, other scripts).
pub(crate) const UNICODE_PEOPLE: &[(&str, &str)] = &[
    ("Zoë", "Ødegård"),
    ("José", "Müller"),
    ("Łukasz", "Żółkiewski"),
    ("Chloé", "Lefèvre"),
    ("Søren", "Kierkegård"),
    ("Анна", "Петрова"),
    ("健", "渡辺"),
    ("Çağla", "Şahin"),
    ("Hương", "Nguyễn"),
    ("Björn", "Þórsson"),
];

/// A department: OU name, NetBIOS-safe short name, and titles (first one is the head's).
#[derive(Debug)]
pub(crate) struct Department {
    pub(crate) name: &'static str,
    pub(crate) short: &'static str,
    pub(crate) titles: &'static [&'static str],
}

pub(crate) const DEPARTMENTS: &[Department] = &[
    Department {
        name: "Executive",
        short: "Executive",
        titles: &[
            "Chief Executive Officer",
            "Chief of Staff",
            "Executive Assistant",
        ],
    },
    Department {
        name: "Engineering",
        short: "Engineering",
        titles: &[
            "VP Engineering",
            "Software Engineer",
            "Senior Software Engineer",
            "Staff Engineer",
            "QA Engineer",
            "Engineering Manager",
        ],
    },
    Department {
        name: "Sales",
        short: "Sales",
        titles: &[
            "VP Sales",
            "Account Executive",
            "Sales Engineer",
            "Sales Manager",
        ],
    },
    Department {
        name: "Marketing",
        short: "Marketing",
        titles: &[
            "CMO",
            "Marketing Specialist",
            "Content Writer",
            "Product Marketing Manager",
        ],
    },
    Department {
        name: "Finance",
        short: "Finance",
        titles: &[
            "CFO",
            "Accountant",
            "Financial Analyst",
            "Payroll Specialist",
        ],
    },
    Department {
        name: "Human Resources",
        short: "HR",
        titles: &["CHRO", "HR Business Partner", "Recruiter", "HR Coordinator"],
    },
    Department {
        name: "IT",
        short: "IT",
        titles: &[
            "CIO",
            "Systems Administrator",
            "Help Desk Technician",
            "Network Engineer",
            "Security Analyst",
        ],
    },
    Department {
        name: "Legal",
        short: "Legal",
        titles: &["General Counsel", "Paralegal", "Corporate Counsel"],
    },
    Department {
        name: "Operations",
        short: "Operations",
        titles: &[
            "COO",
            "Operations Analyst",
            "Facilities Manager",
            "Logistics Coordinator",
        ],
    },
    Department {
        name: "Support",
        short: "Support",
        titles: &[
            "VP Customer Support",
            "Support Engineer",
            "Customer Success Manager",
        ],
    },
];

/// An office: city, state/region, postal code, ISO country, country name, numeric country code,
/// street, phone prefix.
#[derive(Debug)]
pub(crate) struct Office {
    pub(crate) city: &'static str,
    pub(crate) state: &'static str,
    pub(crate) postal_code: &'static str,
    pub(crate) country: &'static str,
    pub(crate) country_name: &'static str,
    pub(crate) country_code: &'static str,
    pub(crate) street: &'static str,
    pub(crate) phone_prefix: &'static str,
}

pub(crate) const OFFICES: &[Office] = &[
    Office {
        city: "Seattle",
        state: "WA",
        postal_code: "98101",
        country: "US",
        country_name: "United States",
        country_code: "840",
        street: "1200 Fifth Avenue",
        phone_prefix: "+1 206 555",
    },
    Office {
        city: "Austin",
        state: "TX",
        postal_code: "78701",
        country: "US",
        country_name: "United States",
        country_code: "840",
        street: "500 Congress Avenue",
        phone_prefix: "+1 512 555",
    },
    Office {
        city: "New York",
        state: "NY",
        postal_code: "10001",
        country: "US",
        country_name: "United States",
        country_code: "840",
        street: "350 Fifth Avenue",
        phone_prefix: "+1 212 555",
    },
    Office {
        city: "Paris",
        state: "Île-de-France",
        postal_code: "75002",
        country: "FR",
        country_name: "France",
        country_code: "250",
        street: "12 rue de la Paix",
        phone_prefix: "+33 1 55 55",
    },
    Office {
        city: "Berlin",
        state: "Berlin",
        postal_code: "10117",
        country: "DE",
        country_name: "Germany",
        country_code: "276",
        street: "Friedrichstraße 100",
        phone_prefix: "+49 30 5555",
    },
    Office {
        city: "Tokyo",
        state: "Tokyo",
        postal_code: "100-0005",
        country: "JP",
        country_name: "Japan",
        country_code: "392",
        street: "1-1 Marunouchi",
        phone_prefix: "+81 3 5555",
    },
];

/// Folds a name to ASCII for account names and mail local parts; characters without an
/// ASCII form are dropped.
pub(crate) fn ascii_fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let folded: &str = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ą' => "a",
            'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ą' => "A",
            'æ' => "ae",
            'Æ' => "AE",
            'ç' | 'ć' | 'č' => "c",
            'Ç' | 'Ć' | 'Č' => "C",
            'è' | 'é' | 'ê' | 'ë' | 'ę' | 'ễ' => "e",
            'È' | 'É' | 'Ê' | 'Ë' | 'Ę' => "E",
            'ì' | 'í' | 'î' | 'ï' | 'ı' => "i",
            'Ì' | 'Í' | 'Î' | 'Ï' | 'İ' => "I",
            'ł' => "l",
            'Ł' => "L",
            'ñ' | 'ń' => "n",
            'Ñ' | 'Ń' => "N",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
            'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "O",
            'ş' | 'ś' | 'š' => "s",
            'Ş' | 'Ś' | 'Š' => "S",
            'ß' => "ss",
            'þ' => "th",
            'Þ' => "Th",
            'ù' | 'ú' | 'û' | 'ü' | 'ư' => "u",
            'Ù' | 'Ú' | 'Û' | 'Ü' => "U",
            'ý' | 'ÿ' => "y",
            'ź' | 'ż' | 'ž' => "z",
            'Ź' | 'Ż' | 'Ž' => "Z",
            'ğ' => "g",
            'ơ' | 'ồ' => "o",
            'đ' => "d",
            'Đ' => "D",
            c if c.is_ascii_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => "",
        };
        out.push_str(folded);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_deterministic() {
        let mut a = Prng::new(7);
        let mut b = Prng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(
            Prng::for_index(7, 1).next_u64(),
            Prng::for_index(7, 2).next_u64()
        );
        assert_eq!(ascii_fold("Zoë Ødegård-O'Brien"), "ZoeOdegardOBrien");
        assert_eq!(ascii_fold("渡辺"), "");
    }
}
