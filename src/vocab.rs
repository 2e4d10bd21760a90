//! The shared vocabulary every stage speaks: the special codes of the SDMX code lists, the
//! prefix of a delivery's own fields in accepted records, and the limits the spec checks and the
//! stages rely on.
//!
//! A leaf module: it depends on nothing in the crate, and everything that names one of these
//! codes or limits takes it from here (never a literal `"_T"` in a stage).

/// Code of a dimension's margin (SDMX `_T`).
pub const TOTAL: &str = "_T";

/// Code for an unknown value (SDMX `_U`): an unknown age in every banding, a raw value no
/// crosswalk mapped when the spec says `unmapped = "_U"`.
pub const UNKNOWN: &str = "_U";

/// Code for "not applicable" (SDMX `_Z`): a code-list attribute that is empty (e.g. no M49
/// intermediate region), a status whose every dated step is later than the day asked.
pub const NOT_APPLICABLE: &str = "_Z";

/// The reporting country's code in a `national` lookup or a `foreign` derivation (Eurostat's
/// `NAT`); every other known country is [`FOREIGN`].
pub const NATIONAL: &str = "NAT";

/// A country other than the reporting one (Eurostat's `FOR`).
pub const FOREIGN: &str = "FOR";

/// Prefix of the delivery's fields in the accepted records; derived columns may not use it.
pub const RAW_PREFIX: &str = "raw_";

/// The column of a schema field in the accepted records: `raw_<field>`. The prefix keeps the
/// delivery's own fields apart from the standard columns harmonize derives (`SEX` next to a raw
/// `sex` would be one column to case-insensitive readers such as DuckDB).
pub fn raw_column(field: &str) -> String {
    format!("{RAW_PREFIX}{field}")
}

/// Dimensions a table may have: its cells hold 2^d margin combinations.
pub const MAX_DIMENSIONS: usize = 8;

/// Columns the stages hand each other in their frames (restricted tier): a count table's true
/// count, the sum of its cell's record keys (cell key method), and a survey estimate's
/// quality flags before protection.
pub mod column {
    /// A cell's true count (`disaggregate` → `protect`).
    pub const COUNT: &str = "n";
    /// The sum of a cell's record keys modulo 2^32 (`disaggregate` → `protect`).
    pub const RECORD_KEY_SUM: &str = "record_key_sum";
    /// Whether a survey estimate is withheld for quality (`survey` → `protect`).
    pub const SUPPRESS: &str = "suppress";
    /// A survey estimate's SDMX observation status before protection (`survey` → `protect`).
    pub const OBS_STATUS: &str = "OBS_STATUS";
}

/// A publication language: the report, the codebook and the code lists' labels are written in
/// each language a spec lists (`[publish] languages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Fr,
    Ar,
}

impl Lang {
    /// Every language migstat writes, in the order of its labels' columns.
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Fr, Lang::Ar];

    /// BCP 47 tag (`en`, `fr`, `ar`): the suffix of label columns (`label_fr`) and spec keys
    /// (`title_fr`), and `xml:lang` / `lang` in documents.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::Ar => "ar",
        }
    }

    /// The language's own name, for a language switch.
    pub fn endonym(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Fr => "Français",
            Lang::Ar => "العربية",
        }
    }

    /// Writing direction (`ltr`, `rtl`).
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Ar => "rtl",
            Lang::En | Lang::Fr => "ltr",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == s)
    }
}

/// A text in the publication languages: English always, French and Arabic where given.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Text {
    pub en: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ar: Option<String>,
}

impl Text {
    /// Empty translations count as missing.
    pub fn new(en: &str, fr: Option<&str>, ar: Option<&str>) -> Self {
        let keep = |s: Option<&str>| s.filter(|s| !s.trim().is_empty()).map(str::to_string);
        Text {
            en: en.to_string(),
            fr: keep(fr),
            ar: keep(ar),
        }
    }

    /// The same text in every language (a number, a period, a code that is its own label).
    pub fn same(s: &str) -> Self {
        Text::new(s, Some(s), Some(s))
    }

    /// The text in `lang`, if it has one.
    pub fn get(&self, lang: Lang) -> Option<&str> {
        match lang {
            Lang::En => Some(self.en.as_str()),
            Lang::Fr => self.fr.as_deref(),
            Lang::Ar => self.ar.as_deref(),
        }
    }

    /// The text in `lang`, else in English (a document shows every missing translation
    /// this way; the release's label check counts them).
    pub fn or_en(&self, lang: Lang) -> &str {
        self.get(lang).unwrap_or(&self.en)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_falls_back_to_english_where_a_translation_is_missing_or_blank() {
        let t = Text::new("Sex", Some("Sexe"), Some("  "));
        assert_eq!(t.or_en(Lang::Fr), "Sexe");
        assert_eq!(t.get(Lang::Ar), None);
        assert_eq!(t.or_en(Lang::Ar), "Sex");
        assert_eq!(Lang::parse("ar"), Some(Lang::Ar));
        assert_eq!(Lang::parse("de"), None);
        assert_eq!(Lang::Ar.dir(), "rtl");
    }

    #[test]
    fn raw_columns_carry_the_prefix_the_spec_reserves() {
        assert_eq!(raw_column("sexe"), "raw_sexe");
        assert!(raw_column("x").starts_with(RAW_PREFIX));
    }

    #[test]
    fn special_codes_are_distinct_sdmx_codes() {
        let codes = [TOTAL, UNKNOWN, NOT_APPLICABLE, NATIONAL, FOREIGN];
        let set: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(set.len(), codes.len());
        assert!(
            [TOTAL, UNKNOWN, NOT_APPLICABLE]
                .iter()
                .all(|c| c.starts_with('_'))
        );
    }
}
