//! The publication languages' fixed texts and number formats: what the report, the codebook and
//! the SDMX structures say in English, French and Arabic that no code list holds.
//!
//! Input: a [`Lang`] and a message, a number or a month. Output: the text in that language.
//! Numbers follow CLDR's conventions for Morocco's languages: English `1,234.5`; French (fr-MA)
//! `1 234,5` with a narrow no-break space; Arabic (ar-MA) `1.234,5` with Western digits, as
//! Moroccan publications print them. Labels of codes come from the code lists, not from here.

use crate::vocab::{Lang, Text};

/// A fixed text in the three languages. Placeholders `{0}`, `{1}`, … are filled by [`fill`], so
/// that each language orders them as its grammar needs.
#[derive(Clone, Copy)]
pub struct Msg(pub &'static str, pub &'static str, pub &'static str);

impl Msg {
    pub fn get(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.0,
            Lang::Fr => self.1,
            Lang::Ar => self.2,
        }
    }

    pub fn text(&self) -> Text {
        Text::new(self.0, Some(self.1), Some(self.2))
    }

    /// The message in `lang` with `{i}` replaced by `args[i]`.
    pub fn fill(&self, lang: Lang, args: &[&str]) -> String {
        fill(self.get(lang), args)
    }
}

/// `template` with each `{i}` replaced by `args[i]` (a placeholder without an argument stays).
pub fn fill(template: &str, args: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').and_then(|close| {
            let i: usize = after[..close].parse().ok()?;
            Some((close, args.get(i)?))
        }) {
            Some((close, arg)) => {
                out.push_str(arg);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A number as `lang` writes it: whole numbers grouped by thousands; others with `decimals`
/// digits after the separator.
pub fn number(v: f64, decimals: usize, lang: Lang) -> String {
    let (group, point) = match lang {
        Lang::En => (",", "."),
        Lang::Fr => ("\u{202f}", ","),
        Lang::Ar => (".", ","),
    };
    let text = format!("{:.*}", decimals, v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut out = String::new();
    if v < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            out.push_str(group);
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push_str(point);
        out.push_str(frac);
    }
    out
}

/// Month names (CLDR's wide, stand-alone forms; Arabic as written in Morocco).
const MONTHS: [Msg; 12] = [
    Msg("January", "janvier", "يناير"),
    Msg("February", "février", "فبراير"),
    Msg("March", "mars", "مارس"),
    Msg("April", "avril", "أبريل"),
    Msg("May", "mai", "ماي"),
    Msg("June", "juin", "يونيو"),
    Msg("July", "juillet", "يوليوز"),
    Msg("August", "août", "غشت"),
    Msg("September", "septembre", "شتنبر"),
    Msg("October", "octobre", "أكتوبر"),
    Msg("November", "novembre", "نونبر"),
    Msg("December", "décembre", "دجنبر"),
];

/// The labels of a month code `YYYY-MM` (`March 2024`, `mars 2024`, `مارس 2024`); `None` for
/// anything else.
pub fn month_labels(code: &str) -> Option<Text> {
    let (y, m) = code.split_once('-')?;
    if y.len() != 4 || !y.chars().all(|c| c.is_ascii_digit()) || m.len() != 2 {
        return None;
    }
    let m: usize = m.parse().ok()?;
    let name = MONTHS.get(m.checked_sub(1)?)?;
    Some(Text::new(
        &format!("{} {y}", name.0),
        Some(&format!("{} {y}", name.1)),
        Some(&format!("{} {y}", name.2)),
    ))
}

/// A table kind's name for people (the spec's kind names otherwise).
pub fn kind(kind: &str) -> Text {
    let m = match kind {
        "count" => Msg("count", "dénombrement", "عدّ"),
        "stock" => Msg("stock on a date", "stock à une date", "رصيد في تاريخ محدد"),
        "flow" => Msg("flow", "flux", "تدفق"),
        "migration" => Msg("migrations", "migrations", "هجرات"),
        "survey_total" => Msg("survey total", "total estimé (enquête)", "مجموع مقدَّر (بحث)"),
        "survey_mean" => Msg(
            "survey mean",
            "moyenne estimée (enquête)",
            "متوسط مقدَّر (بحث)",
        ),
        "survey_proportion" => Msg(
            "survey share",
            "proportion estimée (enquête)",
            "نسبة مقدَّرة (بحث)",
        ),
        "survey_ratio" => Msg(
            "survey ratio",
            "ratio estimé (enquête)",
            "نسبة بين مجموعين (بحث)",
        ),
        "survey_quantile" => Msg(
            "survey quantile",
            "quantile estimé (enquête)",
            "مئين مقدَّر (بحث)",
        ),
        "survey_contrast" => Msg(
            "survey contrast",
            "écart entre estimations (enquête)",
            "فرق بين تقديرات (بحث)",
        ),
        other => return Text::same(other),
    };
    m.text()
}

/// What a cell counts or estimates (the `unit` column's values).
pub fn unit(unit: &str) -> Text {
    let m = match unit {
        "persons" => Msg("persons", "personnes", "أشخاص"),
        "records" => Msg("records", "enregistrements", "سجلات"),
        "events" => Msg("events", "événements", "أحداث"),
        "persons (weighted)" => Msg("persons (weighted)", "personnes (pondéré)", "أشخاص (مرجَّح)"),
        "mean per person (weighted)" => Msg(
            "mean per person (weighted)",
            "moyenne par personne (pondérée)",
            "المتوسط لكل شخص (مرجَّح)",
        ),
        "share of persons (weighted)" => Msg(
            "share of persons (weighted)",
            "proportion de personnes (pondérée)",
            "نسبة الأشخاص (مرجَّحة)",
        ),
        "quantile (weighted)" => Msg("quantile (weighted)", "quantile (pondéré)", "مئين (مرجَّح)"),
        "contrast of estimates" => Msg(
            "contrast of estimates",
            "écart entre estimations",
            "فرق بين تقديرات",
        ),
        "ratio of weighted totals" => Msg(
            "ratio of weighted totals",
            "rapport de totaux pondérés",
            "نسبة بين مجموعين مرجَّحين",
        ),
        "ratio of two estimates" => Msg(
            "ratio of two estimates",
            "rapport de deux estimations",
            "نسبة بين تقديرين",
        ),
        "total (weighted)" => Msg("total (weighted)", "total (pondéré)", "المجموع (مرجَّح)"),
        other => return Text::same(other),
    };
    m.text()
}

/// A run's outcome (the history's `status`) in words.
pub fn run_status(status: crate::manifest::RunStatus) -> Msg {
    use crate::manifest::RunStatus as S;
    match status {
        S::Succeeded => Msg("succeeded", "réussie", "ناجحة"),
        S::UpToDate => Msg("up to date", "à jour", "محدَّثة"),
        S::Rejected => Msg("rejected", "rejetée", "مرفوضة"),
        S::Failed => Msg("failed", "échouée", "فاشلة"),
        S::Locked => Msg("locked out", "verrouillée", "مقفلة"),
        S::Interrupted => Msg("interrupted", "interrompue", "متوقفة"),
    }
}

/// Names of the SDMX concepts migstat adds to every structure.
pub const FREQ: Msg = Msg("Frequency", "Fréquence", "التواتر");
pub const REF_AREA: Msg = Msg("Reference area", "Zone de référence", "المنطقة المرجعية");
pub const TIME_PERIOD: Msg = Msg("Time period", "Période", "الفترة الزمنية");
pub const OBS_VALUE: Msg = Msg("Observation value", "Valeur observée", "القيمة المرصودة");
pub const OBS_STATUS: Msg = Msg("Observation status", "Statut d'observation", "حالة الرصد");
pub const CONF_STATUS: Msg = Msg(
    "Confidentiality status",
    "Statut de confidentialité",
    "حالة السرية",
);
pub const UNIT_MEASURE: Msg = Msg("Unit of measure", "Unité de mesure", "وحدة القياس");
pub const STD_ERR: Msg = Msg("Standard error", "Erreur type", "الخطأ المعياري");
pub const LOWER_BOUND: Msg = Msg(
    "Lower limit of the 95% confidence interval",
    "Borne inférieure de l'intervalle de confiance à 95 %",
    "الحد الأدنى لفترة الثقة 95%",
);
pub const UPPER_BOUND: Msg = Msg(
    "Upper limit of the 95% confidence interval",
    "Borne supérieure de l'intervalle de confiance à 95 %",
    "الحد الأعلى لفترة الثقة 95%",
);
pub const CV: Msg = Msg(
    "Coefficient of variation",
    "Coefficient de variation",
    "معامل الاختلاف",
);
pub const CONCEPT_SCHEME: Msg = Msg(
    "Migration statistics concepts",
    "Concepts des statistiques migratoires",
    "مفاهيم إحصاءات الهجرة",
);

/// SDMX `CL_OBS_STATUS` codes migstat writes.
pub const OBS_STATUS_CODES: [(&str, Msg); 4] = [
    ("A", Msg("Normal value", "Valeur normale", "قيمة عادية")),
    (
        "P",
        Msg("Provisional value", "Valeur provisoire", "قيمة مؤقتة"),
    ),
    (
        "Q",
        Msg(
            "Missing value; suppressed",
            "Valeur manquante ; supprimée",
            "قيمة مفقودة؛ محجوبة",
        ),
    ),
    (
        "U",
        Msg("Low reliability", "Fiabilité faible", "موثوقية منخفضة"),
    ),
];

/// SDMX `CL_CONF_STATUS` codes migstat writes.
pub const CONF_STATUS_CODES: [(&str, Msg); 2] = [
    (
        "C",
        Msg(
            "Confidential statistical information",
            "Information statistique confidentielle",
            "معلومات إحصائية سرية",
        ),
    ),
    ("F", Msg("Free", "Diffusion libre", "متاحة للنشر")),
];

/// SDMX `CL_FREQ` codes migstat writes.
pub const FREQ_CODES: [(&str, Msg); 4] = [
    ("A", Msg("Annual", "Annuelle", "سنوي")),
    ("Q", Msg("Quarterly", "Trimestrielle", "فصلي")),
    ("M", Msg("Monthly", "Mensuelle", "شهري")),
    (
        "_O",
        Msg(
            "Other (a span that is not a calendar year, quarter or month)",
            "Autre (une durée qui n'est ni une année civile, ni un trimestre, ni un mois)",
            "أخرى (مدة ليست سنة ميلادية ولا فصلًا ولا شهرًا)",
        ),
    ),
];

/// A `UNIT_MEASURE` label in the three languages (its English label from [`crate::spec::Measure`]).
pub fn unit_measure(en: &str) -> Text {
    let m = match en {
        "Persons" => Msg("Persons", "Personnes", "أشخاص"),
        "Persons (estimated)" => Msg(
            "Persons (estimated)",
            "Personnes (estimation)",
            "أشخاص (تقدير)",
        ),
        "Events" => Msg("Events", "Événements", "أحداث"),
        "Records" => Msg("Records", "Enregistrements", "سجلات"),
        "Share (0 to 1)" => Msg(
            "Share (0 to 1)",
            "Proportion (de 0 à 1)",
            "نسبة (من 0 إلى 1)",
        ),
        "Mean of the variable" => Msg(
            "Mean of the variable",
            "Moyenne de la variable",
            "متوسط المتغير",
        ),
        "Ratio of two totals" => Msg(
            "Ratio of two totals",
            "Rapport de deux totaux",
            "نسبة بين مجموعين",
        ),
        "Quantile of the variable" => Msg(
            "Quantile of the variable",
            "Quantile de la variable",
            "مئين المتغير",
        ),
        other => return Text::new(other, None, None),
    };
    m.text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_each_locale_as_cldr_writes_them() {
        // By hand, from CLDR (babel 2.x: format_decimal(…, locale="en" / "fr_MA" / "ar_MA")).
        assert_eq!(number(1_234_567.0, 0, Lang::En), "1,234,567");
        assert_eq!(number(1_234_567.0, 0, Lang::Fr), "1\u{202f}234\u{202f}567");
        assert_eq!(number(1_234_567.0, 0, Lang::Ar), "1.234.567");
        assert_eq!(number(1234.25, 2, Lang::Fr), "1\u{202f}234,25");
        assert_eq!(number(1234.25, 2, Lang::Ar), "1.234,25");
        assert_eq!(number(0.1234, 3, Lang::Fr), "0,123");
        assert_eq!(number(-45.0, 0, Lang::En), "-45");
        assert_eq!(number(-0.0004, 3, Lang::En), "0.000");
        assert_eq!(number(999.0, 0, Lang::Fr), "999");
    }

    #[test]
    fn placeholders_are_filled_in_each_language_s_order() {
        assert_eq!(fill("{1} of {0}", &["a", "b"]), "b of a");
        assert_eq!(fill("{0} {x} {2}", &["a"]), "a {x} {2}");
        assert_eq!(fill("no braces", &[]), "no braces");
    }

    #[test]
    fn month_codes_get_month_names() {
        let m = month_labels("2024-03").unwrap();
        assert_eq!(m.en, "March 2024");
        assert_eq!(m.fr.as_deref(), Some("mars 2024"));
        assert_eq!(m.ar.as_deref(), Some("مارس 2024"));
        assert!(month_labels("2024-13").is_none());
        assert!(month_labels("2024").is_none());
        assert!(month_labels("_T").is_none());
    }
}
