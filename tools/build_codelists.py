#!/usr/bin/env python3
"""Build the code lists in schemas/codelists/ from their published sources.

    python3 -m pip install -r tools/requirements.txt
    python3 tools/build_codelists.py            # write schemas/codelists/
    python3 tools/build_codelists.py --check    # exit 1 if the committed files differ

Countries are never typed by hand: ISO 3166-1 codes and English, French and Arabic names come from
`pycountry` (the Debian iso-codes data), M49 numeric codes and M49 sub-regions from
`country_converter`. What is typed here is small and cited: the M49 region tree (UN Statistics
Division, M49 standard), the African Union's five regions (AU Commission, Member States by region),
SDMX CL_SEX 2.1, the age bandings, the project's migration-status list, and Morocco's 12 regions
(2015 reform; codes and French names from ISO 3166-2:MA via pycountry, Arabic names typed).
"""
import csv
import gettext
import io
import json
import os
import sys

import country_converter
import pycountry

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "schemas", "codelists")
CROSSWALKS = os.path.join(ROOT, "schemas", "crosswalks")

# UN M49 regions, sub-regions and intermediate regions (unstats.un.org/unsd/methodology/m49/).
M49_AREAS = [
    # code, level, parent, English, French, Arabic (the M49 page's Arabic version)
    ("001", "world", "", "World", "Monde", "العالم"),
    ("002", "region", "001", "Africa", "Afrique", "أفريقيا"),
    ("015", "subregion", "002", "Northern Africa", "Afrique septentrionale", "شمال أفريقيا"),
    ("202", "subregion", "002", "Sub-Saharan Africa", "Afrique subsaharienne", "أفريقيا جنوب الصحراء الكبرى"),
    ("014", "intermediate", "202", "Eastern Africa", "Afrique orientale", "شرق أفريقيا"),
    ("017", "intermediate", "202", "Middle Africa", "Afrique centrale", "وسط أفريقيا"),
    ("018", "intermediate", "202", "Southern Africa", "Afrique australe", "الجنوب الأفريقي"),
    ("011", "intermediate", "202", "Western Africa", "Afrique occidentale", "غرب أفريقيا"),
    ("019", "region", "001", "Americas", "Amériques", "الأمريكتان"),
    ("419", "subregion", "019", "Latin America and the Caribbean", "Amérique latine et Caraïbes", "أمريكا اللاتينية ومنطقة البحر الكاريبي"),
    ("029", "intermediate", "419", "Caribbean", "Caraïbes", "منطقة البحر الكاريبي"),
    ("013", "intermediate", "419", "Central America", "Amérique centrale", "أمريكا الوسطى"),
    ("005", "intermediate", "419", "South America", "Amérique du Sud", "أمريكا الجنوبية"),
    ("021", "subregion", "019", "Northern America", "Amérique septentrionale", "أمريكا الشمالية"),
    ("010", "region", "001", "Antarctica", "Antarctique", "أنتاركتيكا"),
    ("142", "region", "001", "Asia", "Asie", "آسيا"),
    ("143", "subregion", "142", "Central Asia", "Asie centrale", "آسيا الوسطى"),
    ("030", "subregion", "142", "Eastern Asia", "Asie orientale", "شرق آسيا"),
    ("035", "subregion", "142", "South-eastern Asia", "Asie du Sud-Est", "جنوب شرق آسيا"),
    ("034", "subregion", "142", "Southern Asia", "Asie du Sud", "جنوب آسيا"),
    ("145", "subregion", "142", "Western Asia", "Asie occidentale", "غرب آسيا"),
    ("150", "region", "001", "Europe", "Europe", "أوروبا"),
    ("151", "subregion", "150", "Eastern Europe", "Europe orientale", "أوروبا الشرقية"),
    ("154", "subregion", "150", "Northern Europe", "Europe septentrionale", "أوروبا الشمالية"),
    ("039", "subregion", "150", "Southern Europe", "Europe méridionale", "أوروبا الجنوبية"),
    ("155", "subregion", "150", "Western Europe", "Europe occidentale", "أوروبا الغربية"),
    ("009", "region", "001", "Oceania", "Océanie", "أوقيانوسيا"),
    ("053", "subregion", "009", "Australia and New Zealand", "Australie et Nouvelle-Zélande", "أستراليا ونيوزيلندا"),
    ("054", "subregion", "009", "Melanesia", "Mélanésie", "ميلانيزيا"),
    ("057", "subregion", "009", "Micronesia", "Micronésie", "ميكرونيزيا"),
    ("061", "subregion", "009", "Polynesia", "Polynésie", "بولينيزيا"),
]

# African Union regions (AU Commission: Member States by region; 55 members).
AU_REGIONS = [
    ("AU_C", "Central Africa", "Afrique centrale", "وسط أفريقيا", ["BDI", "CMR", "CAF", "TCD", "COG", "COD", "GNQ", "GAB", "STP"]),
    ("AU_E", "Eastern Africa", "Afrique de l'Est", "شرق أفريقيا", ["COM", "DJI", "ERI", "ETH", "KEN", "MDG", "MUS", "RWA", "SYC", "SOM", "SSD", "SDN", "TZA", "UGA"]),
    ("AU_N", "Northern Africa", "Afrique du Nord", "شمال أفريقيا", ["DZA", "EGY", "LBY", "MRT", "MAR", "ESH", "TUN"]),
    ("AU_S", "Southern Africa", "Afrique australe", "الجنوب الأفريقي", ["AGO", "BWA", "SWZ", "LSO", "MWI", "MOZ", "NAM", "ZAF", "ZMB", "ZWE"]),
    ("AU_W", "Western Africa", "Afrique de l'Ouest", "غرب أفريقيا", ["BEN", "BFA", "CPV", "CIV", "GMB", "GHA", "GIN", "GNB", "LBR", "MLI", "NER", "NGA", "SEN", "SLE", "TGO"]),
]

SEX = [  # SDMX CL_SEX 2.1
    ("F", "Female", "Femme", "أنثى"),
    ("M", "Male", "Homme", "ذكر"),
    ("_T", "Total", "Total", "المجموع"),
    ("_U", "Unknown", "Inconnu", "غير معروف"),
    ("_O", "Other", "Autre", "آخر"),
    ("_N", "Non-response", "Non-réponse", "بدون إجابة"),
    ("_Z", "Not applicable", "Sans objet", "لا ينطبق"),
]

# (banding, description, [(min, max or None)])
BANDINGS = [
    ("un_desa_5y", "UN DESA international migrant stock, 5-year bands to 75+",
     [(a, a + 4) for a in range(0, 75, 5)] + [(75, None)]),
    ("unhcr", "UNHCR demographic bands", [(0, 4), (5, 11), (12, 17), (18, 59), (60, None)]),
    ("broad", "Broad age groups", [(0, 14), (15, 24), (25, 64), (65, None)]),
    ("child", "Children and adults", [(0, 17), (18, None)]),
]

STATUS = [
    # code, domain, English, French, Arabic, UNHCR population type
    ("EMIGRANT", "survey", "Current emigrant", "Émigré actuel", "مهاجر حالي", ""),
    ("RETURNEE", "survey", "Return migrant", "Migrant de retour", "مهاجر عائد", ""),
    ("IMMIGRANT", "survey", "Immigrant", "Immigré", "مهاجر وافد", ""),
    ("NON_MIGRANT", "survey", "Non-migrant", "Non-migrant", "غير مهاجر", ""),
    ("PERMIT_WORK", "admin", "Residence permit holder: work", "Titre de séjour : travail", "رخصة إقامة: عمل", ""),
    ("PERMIT_STUDY", "admin", "Residence permit holder: study", "Titre de séjour : études", "رخصة إقامة: دراسة", ""),
    ("PERMIT_FAMILY", "admin", "Residence permit holder: family", "Titre de séjour : famille", "رخصة إقامة: عائلة", ""),
    ("PERMIT_OTHER", "admin", "Residence permit holder: other", "Titre de séjour : autre", "رخصة إقامة: أخرى", ""),
    ("REGULARISED", "admin", "Regularised (2014 and 2017 campaigns)", "Régularisé (campagnes 2014 et 2017)", "مُسوّى وضعه", ""),
    ("ASYLUM_SEEKER", "admin", "Asylum seeker", "Demandeur d'asile", "طالب لجوء", "ASY"),
    ("REFUGEE", "admin", "Refugee", "Réfugié", "لاجئ", "REF"),
    ("AVR_RETURNEE", "admin", "Assisted voluntary returnee", "Bénéficiaire du retour volontaire assisté", "عائد طوعي بمساعدة", ""),
    ("TRAFFICKING_VICTIM", "admin", "Presumed victim of trafficking", "Victime présumée de traite", "ضحية مفترضة للاتجار بالبشر", ""),
    ("_T", "total", "Total", "Total", "المجموع", ""),
    ("_U", "unknown", "Unknown", "Inconnu", "غير معروف", ""),
]

# Border-crossing directions (Eurostat/UNECE border statistics: entries and exits).
DIRECTION = [
    ("IN", "Entry", "Entrée", "دخول"),
    ("OUT", "Exit", "Sortie", "خروج"),
]

# Forms of exploitation of presumed victims of trafficking (UNODC Global Report on Trafficking in
# Persons categories; French and Arabic as in UNODC's own editions).
EXPLOITATION = [
    ("SEXUAL", "Sexual exploitation", "Exploitation sexuelle", "الاستغلال الجنسي"),
    ("LABOUR", "Forced labour", "Travail forcé", "العمل القسري"),
    ("BEGGING", "Forced begging", "Mendicité forcée", "التسول القسري"),
    ("CRIMINALITY", "Forced criminal activity", "Activités criminelles forcées", "الإكراه على ارتكاب أنشطة إجرامية"),
    ("OTHER", "Other forms of exploitation", "Autres formes d'exploitation", "أشكال أخرى من الاستغلال"),
]

# The concepts tables use as dimensions: their names in the three languages (the codebook, the
# report and the SDMX concept scheme). A dimension not listed here is named after its id, in
# English only; the release's label check reports it.
CONCEPTS = [
    ("SEX", "Sex", "Sexe", "الجنس"),
    ("AGE", "Age", "Âge", "العمر"),
    ("AGE_GROUP", "Age group", "Groupe d'âge", "الفئة العمرية"),
    ("CHILD", "Child or adult", "Enfant ou adulte", "طفل أو بالغ"),
    ("CITIZENSHIP", "Citizenship", "Nationalité", "الجنسية"),
    ("CITIZENSHIP_REGION", "Region of citizenship", "Région de nationalité", "منطقة الجنسية"),
    ("COUNTRY_OF_BIRTH", "Country of birth", "Pays de naissance", "بلد الميلاد"),
    ("COUNTRY_OF_RETURN", "Country of return", "Pays de retour", "بلد العودة"),
    ("COUNTRY_ABROAD", "Country of previous or next residence", "Pays de résidence précédente ou suivante", "بلد الإقامة السابقة أو اللاحقة"),
    ("REGION_ABROAD", "Region of previous or next residence", "Région de résidence précédente ou suivante", "منطقة الإقامة السابقة أو اللاحقة"),
    ("REGION", "Region of Morocco", "Région du Maroc", "جهة المغرب"),
    ("MIGRATION_TYPE", "Migration type", "Type de migration", "نوع الهجرة"),
    ("PERMIT_TYPE", "Residence permit type", "Type de titre de séjour", "نوع رخصة الإقامة"),
    ("STATUS", "Status", "Statut", "الوضع"),
    ("LEGAL_STATUS", "Legal status", "Statut juridique", "الوضع القانوني"),
    ("DIRECTION", "Direction of crossing", "Sens du passage", "اتجاه العبور"),
    ("DURATION_OF_STAY", "Duration of stay", "Durée du séjour", "مدة الإقامة"),
    ("EXPLOITATION", "Form of exploitation", "Forme d'exploitation", "شكل الاستغلال"),
    ("MONTH", "Month", "Mois", "الشهر"),
    ("YEAR", "Year", "Année", "السنة"),
]

# Arabic names iso-codes lacks (its Arabic catalogue still keys the old English name).
AR_MISSING = {"TUR": "تركيا"}

MA_REGIONS_AR = {
    "01": "طنجة تطوان الحسيمة", "02": "الشرق", "03": "فاس مكناس", "04": "الرباط سلا القنيطرة",
    "05": "بني ملال خنيفرة", "06": "الدار البيضاء سطات", "07": "مراكش آسفي", "08": "درعة تافيلالت",
    "09": "سوس ماسة", "10": "كلميم واد نون", "11": "العيون الساقية الحمراء", "12": "الداخلة وادي الذهب",
}


def band_code(lo, hi):
    if hi is None:
        return f"Y_GE{lo}"
    if lo == 0 and hi in (14, 17):
        return f"Y_LT{hi + 1}"
    return f"Y{lo}T{hi}"


def years_ar(n):
    """Arabic counted noun after a number: 3 to 10 take the plural, others the singular."""
    return "سنوات" if 3 <= n <= 10 else "سنة"


def band_labels(lo, hi):
    if hi is None:
        return f"{lo} years and over", f"{lo} ans et plus", f"{lo} {years_ar(lo)} فأكثر"
    if lo == 0 and hi in (14, 17):
        return f"Under {hi + 1} years", f"Moins de {hi + 1} ans", f"أقل من {hi + 1} {years_ar(hi + 1)}"
    return f"{lo}-{hi} years", f"{lo}-{hi} ans", f"{lo}-{hi} {years_ar(hi)}"


def to_csv(header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def build():
    files = {}
    files["sex.csv"] = to_csv(["code", "label_en", "label_fr", "label_ar"], SEX)

    rows = []
    for banding, _, bands in BANDINGS:
        for i, (lo, hi) in enumerate(bands):
            en, fr, ar = band_labels(lo, hi)
            rows.append([banding, band_code(lo, hi), en, fr, ar, lo, "" if hi is None else hi, i + 1])
        rows.append([banding, "_U", "Unknown age", "Âge inconnu", "عمر غير معروف", "", "", len(bands) + 1])
        rows.append([banding, "_T", "All ages", "Tous âges", "جميع الأعمار", "", "", len(bands) + 2])
    files["age_bands.csv"] = to_csv(
        ["banding", "code", "label_en", "label_fr", "label_ar", "min_age", "max_age", "sort"], rows)

    files["migration_status.csv"] = to_csv(
        ["code", "domain", "label_en", "label_fr", "label_ar", "unhcr_population_type"], STATUS)

    files["m49_areas.csv"] = to_csv(["code", "level", "parent", "label_en", "label_fr", "label_ar"], M49_AREAS)
    files["au_regions.csv"] = to_csv(["code", "label_en", "label_fr", "label_ar", "members"],
                                     [(c, en, fr, ar, " ".join(sorted(m))) for c, en, fr, ar, m in AU_REGIONS])
    files["direction.csv"] = to_csv(["code", "label_en", "label_fr", "label_ar"], DIRECTION)
    files["exploitation.csv"] = to_csv(["code", "label_en", "label_fr", "label_ar"], EXPLOITATION)
    files["concepts.csv"] = to_csv(["code", "label_en", "label_fr", "label_ar"], CONCEPTS)

    coco = {}
    with open(os.path.join(os.path.dirname(country_converter.__file__), "country_data.tsv"), encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            coco[r["ISO3"]] = r
    by_name = {name: code for code, _, _, name, _, _ in M49_AREAS}
    parent = {code: p for code, _, p, _, _, _ in M49_AREAS}
    level = {code: lv for code, lv, _, _, _, _ in M49_AREAS}
    au_of = {iso3: c for c, _, _, _, members in AU_REGIONS for iso3 in members}
    fr = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["fr"])
    ar = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["ar"])
    rows = []
    for c in sorted(pycountry.countries, key=lambda c: c.alpha_3):
        area = by_name.get(coco.get(c.alpha_3, {}).get("UNregion", ""), "")
        chain = {}
        while area:
            chain[level[area]] = area
            area = parent[area]
        rows.append([c.alpha_3, c.alpha_2, c.numeric, c.name, fr.gettext(c.name),
                     AR_MISSING.get(c.alpha_3) or ar.gettext(c.name),
                     chain.get("region", ""), chain.get("subregion", ""), chain.get("intermediate", ""),
                     au_of.get(c.alpha_3, "")])
    files["countries.csv"] = to_csv(
        ["iso3", "iso2", "m49", "label_en", "label_fr", "label_ar", "m49_region", "m49_subregion",
         "m49_intermediate", "au_region"], rows)

    rows = []
    for s in sorted((s for s in pycountry.subdivisions.get(country_code="MA") if s.type == "Region"),
                    key=lambda s: s.code):
        name, _, note = s.name.partition(" (")
        stat = s.code.split("-")[1]
        rows.append([s.code, stat, name, name, MA_REGIONS_AR[stat], note.rstrip(")"), "2015"])
    files["ma_regions.csv"] = to_csv(
        ["code", "stat_code", "label_en", "label_fr", "label_ar", "iso_3166_2_note", "vintage"], rows)

    # Generated crosswalks (the hand-edited ones live beside them in schemas/crosswalks/).
    entries = {}
    def add(raw, code):
        key = raw.strip().lower()
        if key and entries.setdefault(key, code) != code:
            entries[key] = None  # ambiguous once normalized: leave it to a hand-edited crosswalk
    for c in sorted(pycountry.countries, key=lambda c: c.alpha_3):
        for raw in (c.alpha_2, c.name, getattr(c, "common_name", ""), getattr(c, "official_name", ""),
                    fr.gettext(c.name), ar.gettext(c.name)):
            add(raw, c.alpha_3)
    files["../crosswalks/countries_iso.csv"] = to_csv(
        ["raw", "code"], sorted((k, v) for k, v in entries.items() if v))
    files["../crosswalks/ma_region_codes.csv"] = to_csv(
        ["raw", "code"], [(r[1], r[0]) for r in rows] + [(str(int(r[1])), r[0]) for r in rows])

    package = {
        "name": "migstat-codelists",
        "title": "Code lists used by migstat",
        "description": "Built by tools/build_codelists.py; edit that script, never the CSV files.",
        "resources": [
            res("sex", "SDMX CL_SEX 2.1 sex codes", "SDMX Global Registry, codelist SDMX:CL_SEX(2.1)"),
            res("age_bands", "Age bandings derived from single-year age",
                "UN DESA International Migrant Stock; UNHCR demographic bands; project bandings",
                "; ".join(f"{b}: {d}" for b, d, _ in BANDINGS)),
            res("migration_status", "Migration statuses, survey and administrative, with UNHCR population types",
                "migstat project code list; UNHCR Refugee Data Finder population types"),
            res("m49_areas", "UN M49 regions, sub-regions and intermediate regions", "UN Statistics Division, M49 standard"),
            res("au_regions", "African Union regions and their member states",
                "African Union Commission, Member States by region"),
            res("countries", "Countries and areas: ISO 3166-1, M49 and AU regions",
                f"ISO 3166-1 via pycountry {pycountry_version()}; M49 sub-regions via country_converter "
                f"{country_converter.__version__}; AU regions as au_regions"),
            res("direction", "Directions of a border crossing", "Eurostat/UNECE border statistics (entries, exits)"),
            res("exploitation", "Forms of exploitation of victims of trafficking",
                "UNODC Global Report on Trafficking in Persons, forms of exploitation"),
            res("concepts", "Names of the concepts tables use as dimensions",
                "migstat project list; SDMX cross-domain concepts where they exist (SEX, AGE, CITIZENSHIP, COUNTRY_OF_BIRTH)"),
            res("ma_regions", "Morocco's 12 regions (2015 reform)",
                f"ISO 3166-2:MA via pycountry {pycountry_version()}; Arabic names typed from the official names"),
        ],
    }
    files["datapackage.json"] = json.dumps(package, ensure_ascii=False, indent=2) + "\n"
    return files


def pycountry_version():
    from importlib.metadata import version
    return version("pycountry")


def res(name, title, source, note=None):
    r = {"name": name, "path": f"{name}.csv", "format": "csv", "encoding": "utf-8", "title": title,
         "sources": [{"title": source}]}
    if note:
        r["description"] = note
    return r


def main():
    check = "--check" in sys.argv[1:]
    files = build()
    stale = []
    for name, text in sorted(files.items()):
        path = os.path.normpath(os.path.join(OUT, name))
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old != text:
            stale.append(name)
            if not check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8", newline="") as f:
                    f.write(text)
    if check and stale:
        print("code lists out of date (run tools/build_codelists.py):", ", ".join(stale))
        return 1
    print(("checked" if check else "wrote"), len(files), "files;", len(stale), "changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
