//! The code lists in schemas/codelists/ hold what their sources say. The figures here are the
//! published facts (../shared/DOMAIN.md), not read back from the files.

use std::collections::{BTreeMap, BTreeSet};

use crate::repo;

fn read(name: &str) -> Vec<BTreeMap<String, String>> {
    let path = repo().join("schemas/codelists").join(name);
    let mut rdr =
        csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = rdr.headers().unwrap().clone();
    rdr.records()
        .map(|r| {
            header
                .iter()
                .zip(r.unwrap().iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn sex_is_sdmx_cl_sex_2_1() {
    let codes: BTreeSet<String> = read("sex.csv")
        .into_iter()
        .map(|r| r["code"].clone())
        .collect();
    let expected: BTreeSet<String> = ["F", "M", "_T", "_U", "_O", "_N", "_Z"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(codes, expected);
}

#[test]
fn every_age_banding_tiles_all_ages_without_overlap() {
    let rows = read("age_bands.csv");
    let mut by_banding: BTreeMap<String, Vec<(u32, Option<u32>, String)>> = BTreeMap::new();
    for r in &rows {
        if r["min_age"].is_empty() {
            assert!(r["code"] == "_T" || r["code"] == "_U");
            continue;
        }
        by_banding.entry(r["banding"].clone()).or_default().push((
            r["min_age"].parse().unwrap(),
            r["max_age"].parse().ok(),
            r["code"].clone(),
        ));
    }
    assert_eq!(
        by_banding.keys().collect::<Vec<_>>(),
        ["broad", "child", "un_desa_5y", "unhcr"]
    );
    for (banding, bands) in &by_banding {
        let mut next = 0;
        for (i, (lo, hi, _)) in bands.iter().enumerate() {
            assert_eq!(*lo, next, "{banding}: a gap or overlap before {lo}");
            match hi {
                Some(h) => next = h + 1,
                None => assert_eq!(i, bands.len() - 1, "{banding}: only the last band is open"),
            }
        }
    }
    let codes = |b: &str| {
        by_banding[b]
            .iter()
            .map(|x| x.2.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(codes("unhcr"), "Y0T4 Y5T11 Y12T17 Y18T59 Y_GE60");
    assert_eq!(codes("broad"), "Y_LT15 Y15T24 Y25T64 Y_GE65");
    assert_eq!(codes("child"), "Y_LT18 Y_GE18");
    assert_eq!(by_banding["un_desa_5y"].len(), 16);
    assert_eq!(by_banding["un_desa_5y"].last().unwrap().2, "Y_GE75");
}

#[test]
fn countries_carry_iso_m49_and_au_regions() {
    let rows = read("countries.csv");
    assert_eq!(rows.len(), 249, "ISO 3166-1 has 249 entries");
    let iso3: BTreeSet<&str> = rows.iter().map(|r| r["iso3"].as_str()).collect();
    assert_eq!(iso3.len(), rows.len());
    let get = |c: &str| rows.iter().find(|r| r["iso3"] == c).unwrap();
    // DOMAIN.md §3: the AU and M49 disagree on Mauritania and Sudan.
    let mrt = get("MRT");
    assert_eq!(
        (
            mrt["m49_region"].as_str(),
            mrt["m49_subregion"].as_str(),
            mrt["m49_intermediate"].as_str(),
            mrt["au_region"].as_str()
        ),
        ("002", "202", "011", "AU_N")
    );
    let sdn = get("SDN");
    assert_eq!(
        (sdn["m49_subregion"].as_str(), sdn["au_region"].as_str()),
        ("015", "AU_E")
    );
    let mar = get("MAR");
    assert_eq!(
        (
            mar["iso2"].as_str(),
            mar["m49"].as_str(),
            mar["label_fr"].as_str()
        ),
        ("MA", "504", "Maroc")
    );
    assert_eq!(
        get("ESH")["m49"],
        "732",
        "Western Sahara stays a separate ISO/M49 entry"
    );
    assert_eq!(
        rows.iter().filter(|r| !r["au_region"].is_empty()).count(),
        55,
        "55 AU member states"
    );
    assert!(rows.iter().all(|r| !r["m49_region"].is_empty()));
    for c in [
        "SEN", "CIV", "GIN", "MLI", "CMR", "NGA", "COD", "SYR", "YEM", "ESP", "CHN", "PHL", "GBR",
        "USA",
    ] {
        assert!(iso3.contains(c), "{c}");
    }
}

#[test]
fn morocco_has_twelve_regions_of_the_2015_vintage() {
    let rows = read("ma_regions.csv");
    let codes: Vec<&str> = rows.iter().map(|r| r["code"].as_str()).collect();
    let expected: Vec<String> = (1..=12).map(|i| format!("MA-{i:02}")).collect();
    assert_eq!(codes, expected);
    assert!(
        rows.iter()
            .all(|r| r["vintage"] == "2015" && r["stat_code"] == r["code"][3..])
    );
    assert_eq!(rows[5]["label_fr"], "Casablanca-Settat");
}

#[test]
fn migration_statuses_cover_survey_types_and_admin_statuses() {
    let rows = read("migration_status.csv");
    let code = |c: &str| {
        rows.iter()
            .find(|r| r["code"] == c)
            .unwrap_or_else(|| panic!("{c}"))
    };
    for c in ["EMIGRANT", "RETURNEE", "IMMIGRANT", "NON_MIGRANT"] {
        assert_eq!(code(c)["domain"], "survey");
    }
    assert_eq!(code("REFUGEE")["unhcr_population_type"], "REF");
    assert_eq!(code("ASYLUM_SEEKER")["unhcr_population_type"], "ASY");
    assert!(
        rows.iter()
            .all(|r| !r["label_ar"].is_empty() && !r["label_fr"].is_empty())
    );
}

/// Every code list with labels has them in the three publication languages: a code without its
/// French or Arabic label fails here, naming the file, the code and the language.
#[test]
fn every_code_list_label_is_given_in_english_french_and_arabic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/codelists");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let mut missing = Vec::new();
    let mut labelled = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let rows = read(&name);
        let Some(first) = rows.first() else { continue };
        if !first.contains_key("label_en") {
            continue;
        }
        labelled += 1;
        for lang in ["en", "fr", "ar"] {
            let col = format!("label_{lang}");
            if !first.contains_key(&col) {
                missing.push(format!("{name}: no column {col}"));
                continue;
            }
            for r in &rows {
                // An Arabic label is written in Arabic script (a catalogue that lacks a name
                // hands back the English one).
                let v = r[&col].trim();
                let arabic = v.chars().any(|c| ('\u{0600}'..='\u{06ff}').contains(&c));
                if lang == "ar" && !v.is_empty() && !arabic {
                    let code = r.get("code").or(r.get("iso3")).cloned().unwrap_or_default();
                    missing.push(format!(
                        "{name}: code {code} has a {col} not in Arabic: {v}"
                    ));
                }
                if v.is_empty() {
                    let code = r.values().next().cloned().unwrap_or_default();
                    let code = r.get("code").or(r.get("iso3")).cloned().unwrap_or(code);
                    missing.push(format!("{name}: code {code} has no {col}"));
                }
            }
        }
    }
    assert!(
        labelled >= 10,
        "the labelled code lists were found ({labelled})"
    );
    assert!(
        missing.is_empty(),
        "labels missing:\n{}",
        missing.join("\n")
    );
}
