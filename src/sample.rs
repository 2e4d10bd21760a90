//! Sample: deterministic synthetic deliveries modelled on what an observatory receives.
//!
//! Input: an output directory, a scale and a seed. Output: six sources — a household survey on
//! international migration and five administrative registers — written the way real deliveries
//! arrive: French, Arabic and English codes, two date formats, one Windows-1252 file with `;`,
//! a UTF-8 BOM, quoted fields with delimiters, quotes and newlines, CRLF line ends, one Parquet
//! file, and about 1% invalid rows of several kinds (impossible ages and dates, malformed or
//! unknown country codes, missing required values, duplicate ids, ragged rows).
//!
//! The generator uses its own small PRNG (SplitMix64) so the bytes never change with a
//! dependency's version: the same scale and seed give the same files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, NaiveDate};
use polars::prelude::*;

use crate::error::{IoContext, PolarsContext, Result};

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fixed forever.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// Pick by weight.
    pub fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut x = (self.next_u64() % u64::from(total)) as u32;
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        &items[items.len() - 1].0
    }
}

/// Countries that matter for Morocco's flows: (alpha-3, alpha-2, French name, weight as origin).
const ORIGINS: &[(&str, &str, &str, u32)] = &[
    ("SEN", "SN", "Sénégal", 14),
    ("CIV", "CI", "Côte d'Ivoire", 12),
    ("GIN", "GN", "Guinée", 10),
    ("MLI", "ML", "Mali", 8),
    ("CMR", "CM", "Cameroun", 7),
    ("NGA", "NG", "Nigéria", 5),
    ("COD", "CD", "Congo, République démocratique du", 5),
    ("SYR", "SY", "Syrie", 6),
    ("YEM", "YE", "Yémen", 3),
    ("SDN", "SD", "Soudan", 3),
    ("MRT", "MR", "Mauritanie", 4),
    ("DZA", "DZ", "Algérie", 4),
    ("TUN", "TN", "Tunisie", 2),
    ("FRA", "FR", "France", 8),
    ("ESP", "ES", "Espagne", 5),
    ("CHN", "CN", "Chine", 3),
    ("PHL", "PH", "Philippines", 2),
];

/// Morocco's 12 regions (2015) with a weight for population and accented commune names.
const REGIONS: &[(&str, u32, &[&str])] = &[
    ("01", 11, &["Tanger", "Tétouan", "Al Hoceïma"]),
    ("02", 7, &["Oujda", "Nador", "Berkane"]),
    ("03", 12, &["Fès", "Meknès", "Taza"]),
    ("04", 14, &["Rabat", "Salé", "Kénitra", "Témara"]),
    ("05", 7, &["Béni Mellal", "Khénifra", "Khouribga"]),
    (
        "06",
        20,
        &["Casablanca", "Mohammédia", "El Jadida", "Settat"],
    ),
    ("07", 13, &["Marrakech", "Safi", "Essaouira"]),
    ("08", 5, &["Errachidia", "Ouarzazate", "Tinghir"]),
    ("09", 8, &["Agadir", "Inezgane", "Taroudant"]),
    ("10", 1, &["Guelmim", "Tan-Tan"]),
    ("11", 1, &["Laâyoune", "Boujdour"]),
    ("12", 1, &["Dakhla", "Aousserd"]),
];

/// The files a scale-1 sample writes, and the rows of each before corruption.
struct Sizes {
    psus_per_stratum: usize,
    permit_persons: usize,
    asylum: usize,
    border: usize,
    returns: usize,
    trafficking: usize,
}

impl Sizes {
    fn at(scale: u32) -> Self {
        let s = scale as usize;
        Sizes {
            psus_per_stratum: 8 * s,
            permit_persons: 3000 * s,
            asylum: 1500 * s,
            border: 20_000 * s,
            returns: 400 * s,
            trafficking: 120 * s,
        }
    }
}

/// Share of rows corrupted on purpose.
const BAD_ROW_RATE: f64 = 0.01;

/// Write every sample source into `dir`; returns each file and its data rows.
pub fn generate(dir: &Path, scale: u32, seed: u64) -> Result<Vec<(PathBuf, u64)>> {
    generate_only(dir, scale, seed, &[])
}

/// The sources [`generate_only`] knows, in the order it writes them.
pub const SOURCES: [&str; 6] = [
    "survey",
    "permits",
    "asylum",
    "border",
    "returns",
    "trafficking",
];

/// As [`generate`], for the named sources only (all when `only` is empty). Each source has its
/// own generator seeded from `seed`, so a source's bytes do not depend on which others are made.
pub fn generate_only(
    dir: &Path,
    scale: u32,
    seed: u64,
    only: &[String],
) -> Result<Vec<(PathBuf, u64)>> {
    if let Some(bad) = only.iter().find(|o| !SOURCES.contains(&o.as_str())) {
        return Err(crate::Error::Usage(format!(
            "no sample source `{bad}`; the sources are {}",
            SOURCES.join(", ")
        )));
    }
    std::fs::create_dir_all(dir).at(dir)?;
    let sizes = Sizes::at(scale);
    let wanted = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    type Make = fn(&Path, &Sizes, u64) -> Result<(PathBuf, u64)>;
    let makers: [(&str, Make); 6] = [
        ("survey", survey),
        ("permits", permits),
        ("asylum", asylum),
        ("border", border),
        ("returns", returns),
        ("trafficking", trafficking),
    ];
    let mut out = Vec::new();
    for (name, make) in makers {
        if wanted(name) {
            out.push(make(dir, &sizes, seed)?);
        }
    }
    Ok(out)
}

/// A CSV file being written: quoting, delimiter, line ending and encoding.
struct CsvOut {
    path: PathBuf,
    w: BufWriter<File>,
    delim: u8,
    crlf: bool,
    cp1252: bool,
    rows: u64,
    line: String,
}

impl CsvOut {
    fn create(
        path: PathBuf,
        delim: u8,
        crlf: bool,
        cp1252: bool,
        bom: bool,
        header: &[&str],
    ) -> Result<Self> {
        let f = File::create(&path).at(&path)?;
        let mut c = CsvOut {
            path,
            w: BufWriter::with_capacity(1 << 20, f),
            delim,
            crlf,
            cp1252,
            rows: 0,
            line: String::new(),
        };
        if bom {
            c.w.write_all(b"\xEF\xBB\xBF").at(&c.path)?;
        }
        let h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        c.record(&h)?;
        c.rows = 0;
        Ok(c)
    }

    fn record(&mut self, fields: &[String]) -> Result<()> {
        self.line.clear();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.line.push(self.delim as char);
            }
            if f.contains([self.delim as char, '"', '\n', '\r']) {
                self.line.push('"');
                self.line.push_str(&f.replace('"', "\"\""));
                self.line.push('"');
            } else {
                self.line.push_str(f);
            }
        }
        self.line.push_str(if self.crlf { "\r\n" } else { "\n" });
        if self.cp1252 {
            let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&self.line);
            self.w.write_all(&bytes).at(&self.path)?;
        } else {
            self.w.write_all(self.line.as_bytes()).at(&self.path)?;
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<(PathBuf, u64)> {
        self.w.flush().at(&self.path)?;
        Ok((self.path, self.rows))
    }
}

/// The kinds of deliberate damage a row can carry.
#[derive(Clone, Copy)]
enum Damage {
    Age(usize),
    Date(usize),
    Country(usize),
    Missing(usize),
    DuplicateId(usize),
    ExtraField,
    MissingField,
}

/// Damages about `rate` of a source's rows, each with one of the source's kinds of damage.
struct Damager<'a> {
    kinds: &'a [Damage],
    rate: f64,
    iso_dates: bool,
    /// The previous row's id, for duplicates.
    last_id: String,
}

impl<'a> Damager<'a> {
    fn new(kinds: &'a [Damage], rate: f64, iso_dates: bool) -> Self {
        Damager {
            kinds,
            rate,
            iso_dates,
            last_id: String::new(),
        }
    }

    /// Maybe damage `row` (whose own id is `id`), in place.
    fn apply(&mut self, rng: &mut Rng, row: &mut Vec<String>, id: &str) {
        if rng.chance(self.rate) {
            damage(rng, row, self.kinds, &self.last_id, self.iso_dates);
        }
        self.last_id.clear();
        self.last_id.push_str(id);
    }
}

/// Damage a row in place (or make it ragged). `last_id` is a previous row's id.
fn damage(rng: &mut Rng, row: &mut Vec<String>, kinds: &[Damage], last_id: &str, iso_dates: bool) {
    match *rng.pick(kinds) {
        Damage::Age(i) => row[i] = rng.pick(&["150", "-3", "999", "abc"]).to_string(),
        Damage::Date(i) => {
            row[i] = if iso_dates {
                rng.pick(&["2023-02-30", "2022-13-01", "2019-00-10", "31/12/2021"])
                    .to_string()
            } else {
                rng.pick(&["31/02/2019", "00/05/2020", "12/13/2021", "2021-12-31"])
                    .to_string()
            }
        }
        Damage::Country(i) => row[i] = rng.pick(&["S3N", "??", "XX", "1234", "ZZZ"]).to_string(),
        Damage::Missing(i) => row[i] = String::new(),
        Damage::DuplicateId(i) => {
            if !last_id.is_empty() {
                row[i] = last_id.to_string()
            } else {
                row[i] = String::new()
            }
        }
        Damage::ExtraField => row.push("extra".into()),
        Damage::MissingField => {
            row.pop();
        }
    }
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

fn random_date(rng: &mut Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    let span = (to - from).num_days().max(0);
    from + Duration::days(rng.range(0, span))
}

fn fr(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

fn iso(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn origin(rng: &mut Rng) -> &'static (&'static str, &'static str, &'static str, u32) {
    let w: Vec<(usize, u32)> = ORIGINS.iter().enumerate().map(|(i, o)| (i, o.3)).collect();
    &ORIGINS[*rng.weighted(&w)]
}

fn region(rng: &mut Rng) -> &'static (&'static str, u32, &'static [&'static str]) {
    let w: Vec<(usize, u32)> = REGIONS.iter().enumerate().map(|(i, r)| (i, r.1)).collect();
    &REGIONS[*rng.weighted(&w)]
}

/// Age for adults in a migration register: mostly 18–45.
fn adult_birth(rng: &mut Rng, at: NaiveDate) -> NaiveDate {
    let (lo, hi) = *rng.weighted(&[((18, 25), 3), ((26, 35), 4), ((36, 50), 2), ((51, 75), 1)]);
    let years = rng.range(lo, hi);
    at - Duration::days(years * 365 + rng.range(0, 364))
}

const SURVEY_DATE: (i32, u32, u32) = (2019, 3, 1);

fn survey(dir: &Path, sz: &Sizes, seed: u64) -> Result<(PathBuf, u64)> {
    let mut rng = Rng::new(seed, 1);
    let header = [
        "hh_id",
        "person_id",
        "stratum",
        "psu",
        "weight",
        "sex",
        "age",
        "birth_date",
        "country_birth",
        "citizenship",
        "migration_type",
        "year_move",
        "region",
        "reason",
        "education",
        "labour_status",
    ];
    let mut w = CsvOut::create(
        dir.join("survey_persons.csv"),
        b',',
        false,
        false,
        false,
        &header,
    )?;
    let at = ymd(SURVEY_DATE.0, SURVEY_DATE.1, SURVEY_DATE.2);
    let kinds = [
        Damage::Age(6),
        Damage::Date(7),
        Damage::Country(8),
        Damage::Missing(5),
        Damage::DuplicateId(1),
        Damage::ExtraField,
    ];
    let mut hh = 0u64;
    let mut damager = Damager::new(&kinds, BAD_ROW_RATE, true);
    for (reg, pop, _) in REGIONS {
        for urban in ["U", "R"] {
            let stratum = format!("{reg}-{urban}");
            for p in 0..sz.psus_per_stratum {
                let psu = format!("{stratum}-{:03}", p + 1);
                let households = 8 + rng.range(0, 4) as usize;
                // Inverse of the selection probability: bigger regions, bigger weights.
                let base =
                    f64::from(*pop) * 2_000.0 / (sz.psus_per_stratum as f64 * households as f64);
                let hh_weight = ((base * (0.8 + 0.4 * rng.unit())) * 100.0).round() / 100.0;
                for _ in 0..households {
                    hh += 1;
                    let hh_id = format!("H{hh:07}");
                    let hh_kind = *rng.weighted(&[(1u8, 55), (2, 27), (3, 18)]); // emigrant / return / neither
                    let members = rng.range(1, 6);
                    for m in 0..members {
                        let person_id = format!("{hh_id}-{:02}", m + 1);
                        let sex_male = rng.chance(if hh_kind == 1 && m > 0 { 0.683 } else { 0.5 });
                        let age = if m == 0 {
                            rng.range(25, 80)
                        } else {
                            rng.range(0, 70)
                        };
                        let birth = at - Duration::days(age * 365 + rng.range(0, 364));
                        let birth = if completed_years(birth, at) == age {
                            birth
                        } else {
                            birth + Duration::days(1)
                        };
                        let (mig, country_birth, citizenship, year_move, reason) =
                            match (hh_kind, m) {
                                (1, m) if m > 0 && age >= 15 && rng.chance(0.6) => (
                                    1,
                                    "MAR",
                                    "MAR",
                                    rng.range(2000, 2018).to_string(),
                                    *rng.pick(&["work", "study", "family", "other"]),
                                ),
                                (2, 0) => (
                                    2,
                                    "MAR",
                                    "MAR",
                                    rng.range(2000, 2018).to_string(),
                                    *rng.pick(&["work", "family", "other"]),
                                ),
                                _ if rng.chance(0.03) => {
                                    let o = origin(&mut rng);
                                    (
                                        3,
                                        o.0,
                                        if rng.chance(0.8) { o.0 } else { "MAR" },
                                        rng.range(1995, 2018).to_string(),
                                        *rng.pick(&["work", "study", "family", "protection"]),
                                    )
                                }
                                _ => (4, "MAR", "MAR", String::new(), ""),
                            };
                        let mut row = vec![
                            hh_id.clone(),
                            person_id.clone(),
                            stratum.clone(),
                            psu.clone(),
                            format!("{hh_weight:.2}"),
                            if sex_male { "1" } else { "2" }.into(),
                            age.to_string(),
                            if rng.chance(0.7) {
                                iso(birth)
                            } else {
                                String::new()
                            },
                            country_birth.into(),
                            citizenship.into(),
                            mig.to_string(),
                            year_move,
                            reg.to_string(),
                            reason.into(),
                            (*rng.pick(if age < 6 {
                                &["none"][..]
                            } else {
                                &["none", "primary", "secondary", "tertiary"][..]
                            }))
                            .into(),
                            (*rng.pick(if age < 15 {
                                &["inactive"][..]
                            } else {
                                &["employed", "unemployed", "inactive", "student"][..]
                            }))
                            .into(),
                        ];
                        damager.apply(&mut rng, &mut row, &person_id);
                        w.record(&row)?;
                    }
                }
            }
        }
    }
    w.finish()
}

fn permits(dir: &Path, sz: &Sizes, seed: u64) -> Result<(PathBuf, u64)> {
    let mut rng = Rng::new(seed, 2);
    let header = [
        "numero_titre",
        "id_personne",
        "sexe",
        "date_naissance",
        "nationalite",
        "type_titre",
        "date_delivrance",
        "date_expiration",
        "region",
        "commune",
    ];
    let mut w = CsvOut::create(
        dir.join("residence_permits.csv"),
        b';',
        true,
        true,
        false,
        &header,
    )?;
    let kinds = [
        Damage::Age(3),
        Damage::Date(6),
        Damage::Country(4),
        Damage::Missing(2),
        Damage::DuplicateId(0),
        Damage::MissingField,
    ];
    let mut n = 0u64;
    let mut damager = Damager::new(&kinds, BAD_ROW_RATE, false);
    for p in 0..sz.permit_persons {
        let person = format!("P{:010x}", (rng.next_u64() & 0xff_ffff_ffff) ^ p as u64);
        let male = rng.chance(0.56);
        let o = origin(&mut rng);
        let first_issue = random_date(&mut rng, ymd(2014, 1, 1), ymd(2024, 12, 31));
        let birth = adult_birth(&mut rng, first_issue);
        let kind = *rng.weighted(&[
            ("TRAVAIL", 40),
            ("ETUDES", 25),
            ("FAMILLE", 25),
            ("AUTRE", 10),
        ]);
        let (reg, _, communes) = region(&mut rng);
        let commune = *rng.pick(communes);
        let renewals = *rng.weighted(&[(0i64, 45), (1, 30), (2, 15), (3, 10)]);
        let mut issue = first_issue;
        for _ in 0..=renewals {
            if issue > ymd(2024, 12, 31) {
                break;
            }
            n += 1;
            let years = if kind == "ETUDES" {
                1
            } else {
                *rng.pick(&[1i64, 2, 3])
            };
            let expiry = issue + Duration::days(365 * years - 1);
            let id = format!("T{n:08}");
            let mut row = vec![
                id.clone(),
                person.clone(),
                if male { "H" } else { "F" }.into(),
                fr(birth),
                o.1.into(),
                kind.into(),
                fr(issue),
                fr(expiry),
                reg.to_string(),
                commune.into(),
            ];
            damager.apply(&mut rng, &mut row, &id);
            implausible(&mut row, n, issue);
            w.record(&row)?;
            issue = expiry + Duration::days(1 + rng.range(0, 40));
        }
    }
    w.finish()
}

/// Permits no schema constraint refuses and no plausibility rule lets through: a holder born
/// after the permit was issued (a negative age), a permit that ends before it starts. Every
/// 1009th record from the 500th and the 700th, outside the random stream, so the other rows stay
/// as they were.
fn implausible(row: &mut [String], n: u64, issue: NaiveDate) {
    if row.len() < 8 {
        return;
    }
    match n % 1009 {
        500 => row[3] = fr(issue + Duration::days(30)),
        700 => row[7] = fr(issue - Duration::days(30)),
        _ => {}
    }
}

fn asylum(dir: &Path, sz: &Sizes, seed: u64) -> Result<(PathBuf, u64)> {
    let mut rng = Rng::new(seed, 3);
    let header = [
        "case_id",
        "person_id",
        "sex",
        "birth_date",
        "citizenship",
        "status",
        "registration_date",
        "recognition_date",
        "region",
    ];
    let mut w = CsvOut::create(
        dir.join("asylum_registrations.csv"),
        b',',
        false,
        false,
        true,
        &header,
    )?;
    let kinds = [
        Damage::Date(3),
        Damage::Missing(2),
        Damage::Missing(4),
        Damage::DuplicateId(1),
        Damage::ExtraField,
    ];
    let mut damager = Damager::new(&kinds, BAD_ROW_RATE, true);
    let mut case = 0u64;
    let mut i = 0;
    while i < sz.asylum {
        case += 1;
        let family = *rng.weighted(&[(1usize, 70), (2, 10), (3, 10), (4, 10)]);
        let o = origin(&mut rng);
        let registered = random_date(&mut rng, ymd(2015, 1, 1), ymd(2024, 12, 31));
        let refugee = rng.chance(0.55);
        let recognised = registered + Duration::days(rng.range(60, 700));
        for m in 0..family.min(sz.asylum - i) {
            i += 1;
            let person = format!("{}-{:07}-{:02}", o.0, case, m + 1);
            let birth = if m < 2 {
                adult_birth(&mut rng, registered)
            } else {
                registered - Duration::days(rng.range(0, 17 * 365))
            };
            let mut row = vec![
                format!("MAR-{}-{case:06}", registered.year()),
                person.clone(),
                (*rng.pick(&["male", "female", "Male", "Female"])).into(),
                iso(birth),
                o.2.into(),
                if refugee { "refugee" } else { "asylum_seeker" }.into(),
                iso(registered),
                if refugee && recognised <= ymd(2024, 12, 31) {
                    iso(recognised)
                } else {
                    String::new()
                },
                region(&mut rng).0.into(),
            ];
            damager.apply(&mut rng, &mut row, &person);
            w.record(&row)?;
        }
    }
    w.finish()
}

const BORDER_POSTS: &[(&str, u32)] = &[
    ("CASA-AIR", 30),
    ("TANGER-MED", 20),
    ("MARRAKECH-AIR", 15),
    ("BAB-SEBTA", 10),
    ("BENI-ENSAR", 10),
    ("RABAT-AIR", 8),
    ("AGADIR-AIR", 5),
    ("GUERGUERAT", 2),
];

/// First and last day of the border deliveries: four years of person-linked crossings, so
/// that the 12-of-16-months rule can decide the crossings of the earlier years.
const BORDER_FROM: (i32, u32, u32) = (2021, 1, 1);
const BORDER_TO: (i32, u32, u32) = (2024, 12, 31);

/// Who a traveller is, which decides their crossings (see [`border`]).
#[derive(Clone, Copy)]
enum Traveller {
    /// Lives in Morocco; short trips abroad.
    Resident,
    /// A Moroccan living abroad (MRE) visiting most summers.
    Diaspora,
    /// A foreign visitor: one or two short stays.
    Visitor,
    /// Comes to live in Morocco (some leave again for good after a few years).
    Immigrant,
    /// A resident leaving to live abroad (some come back on visits, some return for good).
    Emigrant,
    /// Stays of 5 to 11 months (students, seasonal workers): some add up to 12 of 16 months.
    Seasonal,
}

const DESTINATIONS: &[(&str, u32)] = &[
    ("ESP", 25),
    ("FRA", 25),
    ("SAU", 10),
    ("TUR", 8),
    ("ITA", 6),
    ("ARE", 6),
    ("BEL", 5),
    ("NLD", 4),
    ("DEU", 4),
    ("USA", 3),
    ("CAN", 2),
    ("SEN", 2),
];
const DIASPORA: &[(&str, u32)] = &[
    ("FRA", 35),
    ("ESP", 25),
    ("ITA", 15),
    ("BEL", 10),
    ("NLD", 8),
    ("DEU", 5),
    ("CAN", 2),
];
const VISITORS: &[(&str, u32)] = &[
    ("FRA", 25),
    ("ESP", 18),
    ("GBR", 12),
    ("DEU", 10),
    ("USA", 8),
    ("ITA", 8),
    ("BEL", 6),
    ("CHN", 5),
    ("DZA", 4),
    ("SEN", 4),
];
const IMMIGRANTS: &[(&str, u32)] = &[
    ("SEN", 15),
    ("CIV", 12),
    ("FRA", 12),
    ("ESP", 8),
    ("GIN", 8),
    ("MLI", 7),
    ("NGA", 6),
    ("CMR", 6),
    ("CHN", 5),
    ("SYR", 4),
    ("USA", 3),
    ("MAR", 14),
];

/// Border-crossing events of person-linked travellers (`traveller_id`), each traveller's
/// crossings written together in date order: residents' trips, the diaspora's summer visits,
/// visitors, immigrants, emigrants and long seasonal stays, so that the default pipeline's
/// migration tables have immigrants and emigrants under both residence rules.
fn border(dir: &Path, sz: &Sizes, seed: u64) -> Result<(PathBuf, u64)> {
    let mut rng = Rng::new(seed, 4);
    let header = [
        "event_id",
        "traveller_id",
        "crossing_date",
        "border_post",
        "direction",
        "sex",
        "birth_year",
        "citizenship",
        "other_country",
        "document_type",
    ];
    let mut w = CsvOut::create(
        dir.join("border_crossings.csv"),
        b',',
        false,
        false,
        false,
        &header,
    )?;
    let kinds = [
        Damage::Date(2),
        Damage::Country(7),
        Damage::Missing(5),
        Damage::DuplicateId(0),
        Damage::MissingField,
        Damage::Age(6),
    ];
    let mut damager = Damager::new(&kinds, BAD_ROW_RATE, true);
    let (from, to) = (
        ymd(BORDER_FROM.0, BORDER_FROM.1, BORDER_FROM.2),
        ymd(BORDER_TO.0, BORDER_TO.1, BORDER_TO.2),
    );
    let days = |n: i64| Duration::days(n);
    let mut event = 0usize;
    let mut traveller = 0usize;
    // (date, arrival, country abroad)
    let mut trips: Vec<(NaiveDate, bool, &'static str)> = Vec::new();
    while event < sz.border {
        traveller += 1;
        trips.clear();
        let kind = *rng.weighted(&[
            (Traveller::Resident, 34),
            (Traveller::Diaspora, 22),
            (Traveller::Visitor, 22),
            (Traveller::Immigrant, 8),
            (Traveller::Emigrant, 8),
            (Traveller::Seasonal, 6),
        ]);
        let (citizenship, birth_year) = match kind {
            Traveller::Resident => (
                if rng.chance(0.92) {
                    "MAR"
                } else {
                    *rng.weighted(IMMIGRANTS)
                },
                rng.range(1945, 2015),
            ),
            Traveller::Diaspora | Traveller::Emigrant => ("MAR", rng.range(1950, 2010)),
            Traveller::Visitor => (*rng.weighted(VISITORS), rng.range(1945, 2015)),
            Traveller::Immigrant | Traveller::Seasonal => {
                (*rng.weighted(IMMIGRANTS), rng.range(1960, 2006))
            }
        };
        // A trip away (residents) or a stay (others) from `start` lasting `len` days.
        let away = |trips: &mut Vec<(NaiveDate, bool, &'static str)>,
                    start: NaiveDate,
                    len: i64,
                    country: &'static str| {
            trips.push((start, false, country));
            trips.push((start + days(len), true, country));
        };
        match kind {
            Traveller::Resident => {
                let mut d = random_date(&mut rng, from, from + days(300));
                while d < to {
                    let (lo, hi) = *rng.weighted(&[((3, 21), 8), ((22, 90), 2)]);
                    let len = rng.range(lo, hi);
                    let to_country = *rng.weighted(DESTINATIONS);
                    away(&mut trips, d, len, to_country);
                    d += days(len + rng.range(60, 500));
                }
            }
            Traveller::Diaspora => {
                let home = *rng.weighted(DIASPORA);
                for year in 2021..=2024 {
                    if rng.chance(0.7) {
                        let arrive = random_date(&mut rng, ymd(year, 6, 20), ymd(year, 8, 10));
                        trips.push((arrive, true, home));
                        trips.push((arrive + days(rng.range(10, 45)), false, home));
                    }
                }
            }
            Traveller::Visitor => {
                let home = citizenship;
                let mut arrive = random_date(&mut rng, from, to);
                for _ in 0..rng.range(1, 2) {
                    let stay = rng.range(3, 28);
                    trips.push((arrive, true, home));
                    trips.push((arrive + days(stay), false, home));
                    arrive += days(stay + rng.range(60, 700));
                }
            }
            Traveller::Immigrant => {
                let origin = if citizenship == "MAR" {
                    *rng.weighted(DIASPORA)
                } else {
                    citizenship
                };
                let arrive = random_date(&mut rng, from, to);
                trips.push((arrive, true, origin));
                let mut d = arrive + days(rng.range(90, 400));
                // Short trips home; a quarter leave for good after one to three years.
                let leaves = rng
                    .chance(0.25)
                    .then(|| arrive + days(rng.range(400, 1100)));
                let stop = leaves.unwrap_or(to);
                while d + days(60) < stop {
                    let len = rng.range(7, 40);
                    away(&mut trips, d, len, origin);
                    d += days(len + rng.range(150, 420));
                }
                if let Some(l) = leaves {
                    trips.push((l, false, origin));
                }
            }
            Traveller::Emigrant => {
                let dest = *rng.weighted(DIASPORA);
                let leave = random_date(&mut rng, from + days(60), to);
                // A trip or two before leaving.
                if rng.chance(0.4) {
                    let d = random_date(&mut rng, from, leave - days(45));
                    if d < leave - days(40) {
                        let (len, to_country) = (rng.range(5, 20), *rng.weighted(DESTINATIONS));
                        away(&mut trips, d, len, to_country);
                    }
                }
                trips.push((leave, false, dest));
                match *rng.weighted(&[(0u8, 5), (1, 3), (2, 2)]) {
                    // Gone for good.
                    0 => {}
                    // A summer visit about 7 to 9 months after leaving (12 of 16: still an
                    // emigrant; 12 months in a row: not).
                    1 => {
                        let back = leave + days(rng.range(210, 280));
                        trips.push((back, true, dest));
                        trips.push((back + days(rng.range(14, 35)), false, dest));
                    }
                    // Returns for good after 13 to 30 months.
                    _ => trips.push((leave + days(rng.range(400, 900)), true, dest)),
                }
            }
            Traveller::Seasonal => {
                let origin = citizenship;
                let mut d = random_date(&mut rng, from, to);
                for _ in 0..rng.range(1, 3) {
                    let stay = rng.range(150, 340);
                    trips.push((d, true, origin));
                    trips.push((d + days(stay), false, origin));
                    d += days(stay + rng.range(20, 120));
                }
            }
        }
        trips.retain(|t| t.0 >= from && t.0 <= to);
        trips.sort_by_key(|t| t.0);
        let sex = if rng.chance(0.54) { "M" } else { "F" };
        let document = *rng.weighted(&[("passport", 85), ("id_card", 12), ("laissez_passer", 3)]);
        let tid = format!("T{traveller:010}");
        for &(date, arrival, country) in trips.iter() {
            if event >= sz.border {
                break;
            }
            event += 1;
            let id = format!("E{event:012}");
            let mut row = vec![
                id.clone(),
                tid.clone(),
                iso(date),
                (*rng.weighted(BORDER_POSTS)).into(),
                if arrival { "IN" } else { "OUT" }.into(),
                sex.into(),
                birth_year.to_string(),
                citizenship.into(),
                country.into(),
                document.into(),
            ];
            damager.apply(&mut rng, &mut row, &id);
            w.record(&row)?;
        }
    }
    w.finish()
}

fn returns(dir: &Path, sz: &Sizes, seed: u64) -> Result<(PathBuf, u64)> {
    let mut rng = Rng::new(seed, 5);
    let n = sz.returns;
    let (mut id, mut person, mut sex, mut age, mut country, mut date, mut reg) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let origins: Vec<(&str, u32)> = ORIGINS
        .iter()
        .filter(|o| !["FRA", "ESP", "CHN", "PHL", "SYR", "YEM"].contains(&o.0))
        .map(|o| (o.0, o.3))
        .collect();
    for i in 0..n {
        let d = random_date(&mut rng, ymd(2022, 1, 1), ymd(2024, 12, 31));
        let mut row_age = Some(if rng.chance(0.1) {
            rng.range(0, 17)
        } else {
            rng.range(18, 55)
        });
        let mut row_sex = Some(if rng.chance(0.8) {
            "ذكر"
        } else {
            "أنثى"
        });
        let mut row_id = format!("AVRR-{:06}", i + 1);
        if rng.chance(BAD_ROW_RATE * 2.0) {
            match rng.range(0, 2) {
                0 => row_age = Some(*rng.pick(&[-1i64, 130])),
                1 => row_sex = None,
                _ => row_id = id.last().cloned().unwrap_or_default(),
            }
        }
        id.push(row_id);
        person.push(format!("R{:08x}", rng.next_u64() as u32));
        sex.push(row_sex);
        age.push(row_age);
        country.push(*rng.weighted(&origins));
        date.push(days_since_1970(d));
        reg.push(region(&mut rng).0);
    }
    let path = dir.join("assisted_returns.parquet");
    let mut df = DataFrame::new_infer_height(vec![
        Column::new("return_id".into(), id),
        Column::new("person_id".into(), person),
        Column::new("sex".into(), sex),
        Column::new("age".into(), age),
        Column::new("country_of_return".into(), country),
        Column::new("departure_date".into(), date)
            .cast(&DataType::Date)
            .ctx(|| "typing departure_date".into())?,
        Column::new("region_of_departure".into(), reg),
    ])
    .ctx(|| "building the assisted-returns sample".into())?;
    let f = File::create(&path).at(&path)?;
    ParquetWriter::new(f)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut df)
        .ctx(|| format!("writing {}", path.display()))?;
    Ok((path, n as u64))
}

fn trafficking(dir: &Path, sz: &Sizes, seed: u64) -> Result<(PathBuf, u64)> {
    let mut rng = Rng::new(seed, 6);
    let header = [
        "referral_id",
        "sex",
        "age",
        "citizenship",
        "exploitation_form",
        "referral_date",
        "referring_agency",
        "notes",
    ];
    let mut w = CsvOut::create(
        dir.join("trafficking_referrals.csv"),
        b',',
        false,
        false,
        false,
        &header,
    )?;
    let kinds = [
        Damage::Age(2),
        Damage::Date(5),
        Damage::Missing(1),
        Damage::DuplicateId(0),
        Damage::ExtraField,
    ];
    let mut damager = Damager::new(&kinds, BAD_ROW_RATE * 3.0, false);
    let notes = [
        "",
        "",
        "Orienté par une ONG, \"cas urgent\"",
        "Prise en charge médicale;\nsuivi psychosocial",
        "Referred by labour inspection, employer under investigation",
        "Mineur non accompagné\r\nhébergé en centre",
    ];
    for i in 0..sz.trafficking {
        let id = format!("TR-{:05}", i + 1);
        let female = rng.chance(0.7);
        let age = if rng.chance(0.25) {
            rng.range(12, 17)
        } else {
            rng.range(18, 45)
        };
        let o = origin(&mut rng);
        let mut row = vec![
            id.clone(),
            (*rng.pick(if female {
                &["F", "2", "Femme"][..]
            } else {
                &["M", "1", "Homme"][..]
            }))
            .into(),
            age.to_string(),
            o.0.into(),
            (*rng.weighted(&[
                ("sexual", 45),
                ("labour", 30),
                ("forced_begging", 12),
                ("forced_criminality", 5),
                ("other", 8),
            ]))
            .into(),
            fr(random_date(&mut rng, ymd(2020, 1, 1), ymd(2024, 12, 31))),
            (*rng.pick(&[
                "DGSN",
                "Gendarmerie Royale",
                "Ministère de la Justice",
                "ONG",
            ]))
            .into(),
            (*rng.pick(&notes)).into(),
        ];
        damager.apply(&mut rng, &mut row, &id);
        w.record(&row)?;
    }
    w.finish()
}

// The generator's own date arithmetic, written differently from `crate::calendar` (which the
// tests this data feeds check): the sample must not agree with migstat by sharing its code.

/// Completed years from `birth` to `at`, by the YYYYMMDD difference.
fn completed_years(birth: NaiveDate, at: NaiveDate) -> i64 {
    let ymd = |d: NaiveDate| {
        i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day())
    };
    (ymd(at) - ymd(birth)).div_euclid(10_000)
}

/// Days from 1970-01-01 to `d` (Arrow's `Date32`).
fn days_since_1970(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((d - epoch).num_days()).unwrap_or(i32::MAX)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_fixed() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut r = Rng(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
