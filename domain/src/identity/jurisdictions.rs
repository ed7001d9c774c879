//! Countries (ISO 3166-1 alpha-2) and the jurisdictions whose residents may
//! not open an account.
//!
//! The default restricted list covers places where crypto mining or mining
//! contracts are banned for residents, or where sanctions forbid service:
//! CN (mining banned since 2021), BD, DZ, EG, IQ, MA, NP, QA, TN (crypto
//! activity banned or unlicensable), and the comprehensively sanctioned CU,
//! IR, KP, SY. Operators replace it with `HASHGRID_RESTRICTED_COUNTRIES`
//! (comma-separated codes) on legal advice; it is configuration, not law.

use std::collections::BTreeSet;

pub const DEFAULT_RESTRICTED: &[&str] = &[
    "BD", "CN", "CU", "DZ", "EG", "IQ", "IR", "KP", "MA", "NP", "QA", "SY", "TN",
];

/// Every officially assigned ISO 3166-1 alpha-2 code.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL \
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO \
DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM \
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR \
LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL \
NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ \
SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA \
VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// A valid, upper-case country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

impl Country {
    pub fn parse(input: &str) -> Option<Country> {
        let s = input.trim().to_ascii_uppercase();
        let b = s.as_bytes();
        if b.len() != 2 || !ISO_3166_ALPHA2.split(' ').any(|c| c == s) {
            return None;
        }
        Some(Country([b[0], b[1]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// The restricted jurisdictions in force.
#[derive(Debug, Clone)]
pub struct Restrictions(BTreeSet<Country>);

impl Restrictions {
    pub fn default_list() -> Self {
        Restrictions(
            DEFAULT_RESTRICTED
                .iter()
                .filter_map(|c| Country::parse(c))
                .collect(),
        )
    }

    /// Parses `"CN, KP"`; an unknown code is an error naming it.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for code in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            set.insert(
                Country::parse(code)
                    .ok_or_else(|| format!("{code:?} is not an ISO 3166-1 alpha-2 code"))?,
            );
        }
        Ok(Restrictions(set))
    }

    pub fn is_restricted(&self, country: Country) -> bool {
        self.0.contains(&country)
    }

    pub fn codes(&self) -> Vec<&str> {
        self.0.iter().map(Country::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_iso_codes() {
        assert_eq!(Country::parse("de").unwrap().as_str(), "DE");
        assert!(Country::parse("XX").is_none());
        assert!(Country::parse("DEU").is_none());
        assert_eq!(ISO_3166_ALPHA2.split(' ').count(), 249);
    }

    #[test]
    fn default_list_restricts_mining_bans_and_sanctions() {
        let r = Restrictions::default_list();
        for c in ["CN", "KP", "IR", "NP"] {
            assert!(r.is_restricted(Country::parse(c).unwrap()), "{c}");
        }
        assert!(!r.is_restricted(Country::parse("DE").unwrap()));
        assert_eq!(r.codes().len(), DEFAULT_RESTRICTED.len());
    }

    #[test]
    fn configured_list_is_checked() {
        assert!(
            Restrictions::parse("US, ca")
                .unwrap()
                .is_restricted(Country::parse("CA").unwrap())
        );
        assert!(Restrictions::parse("US,ZZ").is_err());
        assert!(Restrictions::parse("").unwrap().codes().is_empty());
    }
}
