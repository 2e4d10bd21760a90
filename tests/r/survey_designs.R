# Reference values for migstat's survey estimators under every kind of design, from R's survey
# package (Lumley). Run by tests/r/make_survey_golden.sh:
#   Rscript tests/r/survey_designs.R generate tests/fixtures/survey_designs/survey.csv
#   Rscript tests/r/survey_designs.R expect tests/fixtures/survey_designs/survey.csv tests/golden/survey_designs_r.csv tests/golden/survey_ciprop_r.csv
#   Rscript tests/r/survey_designs.R calibrated tests/fixtures/survey_designs/survey.csv tests/golden/survey_calibrated_r.csv tests/golden/survey_calibration_g_r.csv
#   Rscript tests/r/survey_designs.R quantiles tests/fixtures/survey_designs/survey.csv tests/golden/survey_quantile_r.csv
#   Rscript tests/r/survey_designs.R contrasts tests/fixtures/survey_designs/survey.csv tests/golden/survey_contrast_r.csv
#   Rscript tests/r/survey_designs.R jkn tests/fixtures/survey_designs/jkn.csv tests/golden/survey_jkn_r.csv
#   Rscript tests/r/survey_designs.R nonresponse tests/fixtures/survey_designs/survey.csv tests/golden/survey_nonresponse_r.csv
#   Rscript tests/r/survey_designs.R covariances tests/fixtures/survey_designs/survey.csv tests/golden/survey_covariance_r.csv
# `generate` draws the synthetic survey (committed, so it needs to run only once); `expect`
# computes the estimates that tests/integration/survey.rs compares migstat with. The design
# names below are the source ids of the spec that test writes.
suppressPackageStartupMessages(library(survey))
args <- commandArgs(trailingOnly = TRUE)

generate <- function(path) {
  set.seed(20261122)
  npsu <- c(S1 = 3, S2 = 4, S3 = 2, S4 = 5, S5 = 3, S6 = 3)
  rows <- list()
  for (h in names(npsu)) for (p in seq_len(npsu[[h]])) {
    nssu <- sample(2:4, 1)
    for (s in seq_len(nssu)) {
      k <- sample(2:5, 1)
      rows[[length(rows) + 1]] <- data.frame(
        stratum = h, psu = sprintf("%s-P%d", h, p), ssu = sprintf("%s-P%d-H%d", h, p, s),
        n_ssu_pop = nssu * 3, k = k
      )
    }
  }
  d <- do.call(rbind, lapply(rows, function(r) r[rep(1, r$k), ]))
  n <- nrow(d)
  d$id <- sprintf("R%04d", seq_len(n))
  d$sex <- sample(c("M", "F"), n, replace = TRUE)
  d$grp <- sample(c("A", "B", "C"), n, replace = TRUE, prob = c(.5, .3, .2))
  d$grp[d$stratum == "S1" & d$grp == "C"] <- "B" # a domain empty in one stratum
  d$weight <- round(runif(n, 50, 150) * match(d$stratum, names(npsu)), 2)
  d$y <- round(rgamma(n, 2, 0.001), 1)
  d$y[sample(n, 8)] <- NA
  d$x <- sample(1:6, n, replace = TRUE)
  d$n_psu_pop <- npsu[d$stratum] * 4
  d$psu_fraction <- 0.25
  d$n_elem_pop <- ave(rep(1, n), d$stratum, FUN = sum) * 20
  # Stratum S3 split in two strata of one PSU each: lonely PSUs.
  d$stratum_l <- ifelse(d$stratum == "S3", d$psu, d$stratum)
  jk <- as.svrepdesign(svydesign(ids = ~psu, weights = ~weight, data = d), type = "JK1", compress = FALSE)
  w <- matrix(as.numeric(as.matrix(weights(jk, "analysis"))), nrow = n)
  colnames(w) <- sprintf("jk1_%02d", seq_len(ncol(w)))
  bs <- as.svrepdesign(svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE),
    type = "bootstrap", replicates = 30, compress = FALSE)
  b <- matrix(as.numeric(as.matrix(weights(bs, "analysis"))), nrow = n)
  colnames(b) <- sprintf("boot_%02d", seq_len(ncol(b)))
  d <- data.frame(d[c("id", "stratum", "stratum_l", "psu", "ssu", "weight", "n_elem_pop", "n_psu_pop",
    "psu_fraction", "n_ssu_pop", "sex", "grp", "y", "x")], as.data.frame(w), as.data.frame(b))
  for (c in c(colnames(w), colnames(b))) d[[c]] <- sprintf("%.17g", d[[c]])
  write.csv(d, path, row.names = FALSE, quote = FALSE, na = "")
}

getdeff <- function(t) {
  x <- tryCatch(deff(t), error = function(e) NULL)
  if (is.null(x)) NA else unname(x)
}

# The designs every mode compares (design, then options: level, lonely-PSU policy).
make_designs <- function(d) {
  list(
    strat = list(svydesign(ids = ~1, strata = ~stratum, weights = ~weight, data = d)),
    strat_fpc = list(svydesign(ids = ~1, strata = ~stratum, fpc = ~n_elem_pop, weights = ~weight, data = d)),
    clus = list(svydesign(ids = ~psu, weights = ~weight, data = d)),
    clus_fpc_90 = list(svydesign(ids = ~psu, fpc = ~psu_fraction, weights = ~weight, data = d), level = 0.90),
    strat_clus = list(svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE)),
    two_stage = list(svydesign(ids = ~psu + ssu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE)),
    two_stage_fpc = list(svydesign(ids = ~psu + ssu, strata = ~stratum, fpc = ~n_psu_pop + n_ssu_pop,
      weights = ~weight, data = d, nest = TRUE)),
    # No weights: R derives them from the FPCs (N/n at each stage).
    strat_fpc_only = list(svydesign(ids = ~1, strata = ~stratum, fpc = ~n_elem_pop, data = d)),
    two_stage_fpc_only = list(svydesign(ids = ~psu + ssu, strata = ~stratum, fpc = ~n_psu_pop + n_ssu_pop,
      data = d, nest = TRUE)),
    lonely_remove = list(svydesign(ids = ~psu, strata = ~stratum_l, weights = ~weight, data = d, nest = TRUE), lonely = "remove"),
    lonely_certainty = list(svydesign(ids = ~psu, strata = ~stratum_l, weights = ~weight, data = d, nest = TRUE), lonely = "certainty"),
    lonely_adjust = list(svydesign(ids = ~psu, strata = ~stratum_l, weights = ~weight, data = d, nest = TRUE), lonely = "adjust"),
    lonely_average = list(svydesign(ids = ~psu, strata = ~stratum_l, weights = ~weight, data = d, nest = TRUE), lonely = "average"),
    jk1 = list(suppressWarnings(svrepdesign(data = d, weights = ~weight, repweights = "^jk1_", type = "JK1", combined.weights = TRUE))),
    boot = list(svrepdesign(data = d, weights = ~weight, repweights = "^boot_", type = "bootstrap", combined.weights = TRUE))
  )
}

expect <- function(path, out, out_ciprop) {
  d <- read.csv(path, colClasses = c(sex = "character", grp = "character"))
  d$one <- 1
  d$SEX <- d$sex
  d$GRP <- d$grp
  d$STRATUM <- d$stratum
  designs <- make_designs(d)
  res <- list()
  ci_rows <- list()
  for (name in names(designs)) {
    spec <- designs[[name]]
    des <- spec[[1]]
    level <- if (is.null(spec$level)) 0.95 else spec$level
    options(survey.lonely.psu = if (is.null(spec$lonely)) "fail" else spec$lonely)
    # Every margin combination of `dims` (`_T` for a margin), as migstat publishes it.
    cube <- function(table, dims, est) {
      for (k in 0:(2^length(dims) - 1)) {
        totalled <- bitwAnd(k, 2^(0:(length(dims) - 1))) != 0
        keep <- dims[!totalled]
        if (length(keep) == 0) {
          t <- est(NULL)
          cells <- data.frame(row.names = 1)
        } else {
          t <- est(as.formula(paste("~", paste(keep, collapse = "+"))))
          cells <- as.data.frame(t)[keep]
        }
        ci <- confint(t, level = level, df = degf(des))
        r <- data.frame(design = name, table = table, cells, estimate = unname(coef(t)), se = unname(SE(t)),
          ci_low_t = ci[, 1], ci_high_t = ci[, 2], df = degf(des), deff = getdeff(t))
        for (dd in dims[totalled]) r[[dd]] <- "_T"
        for (dd in c("SEX", "GRP", "STRATUM")) if (is.null(r[[dd]])) r[[dd]] <- NA
        res[[length(res) + 1]] <<- r[c("design", "table", "SEX", "GRP", "STRATUM", "estimate", "se", "ci_low_t", "ci_high_t", "df", "deff")]
      }
    }
    by <- function(f, fun, ...) function(b) {
      if (is.null(b)) fun(f, des, deff = TRUE, ...) else svyby(f, b, des, fun, deff = TRUE, ...)
    }
    cube("population", c("SEX", "GRP"), by(~one, svytotal))
    cube("total_y", c("SEX", "GRP"), by(~y, svytotal, na.rm = TRUE))
    cube("mean_y", c("SEX", "GRP"), by(~y, svymean, na.rm = TRUE))
    # R cannot compute the design effect of a ratio under replicate weights.
    rdeff <- !inherits(des, "svyrep.design")
    ratio <- function(b) {
      if (is.null(b)) svyratio(~y, ~x, des, na.rm = TRUE, deff = rdeff)
      else svyby(~y, b, des, svyratio, denominator = ~x, na.rm = TRUE, deff = rdeff)
    }
    cube("ratio_y_x", c("SEX", "GRP"), ratio)
    # Shares of each GRP within SEX: svymean of the category's indicator.
    for (level_ in sort(unique(d$grp))) {
      des <- update(des, ind = as.numeric(GRP == level_))
      n0 <- length(res)
      cube("share_grp", "SEX", by(~ind, svymean))
      cube("share_grp_stratum", "STRATUM", by(~ind, svymean))
      for (i in (n0 + 1):length(res)) res[[i]]$GRP <- level_
      # Their intervals by every svyciprop method: with the design's df (passed), and with
      # each domain's own (svyby's subsets, R's default; on a replicate design the rank of the
      # subset's replicate weights less one). Beta always takes the domain's.
      rep <- inherits(des, "svyrep.design")
      # R's likelihood interval is NA on a replicate design (its svyglm keeps no model variance).
      methods <- c("mean", "logit", if (!rep) "likelihood", "xlogit", "asin", "beta")
      for (m in methods) for (dfmode in c("design", "domain")) {
        whole <- svyciprop(~ind, des, method = m, level = level, df = degf(des))
        b <- if (dfmode == "design") {
          svyby(~ind, ~SEX, des, svyciprop, method = m, level = level, df = degf(des), vartype = "ci")
        } else {
          svyby(~ind, ~SEX, des, svyciprop, method = m, level = level, vartype = "ci")
        }
        dfs <- if (dfmode == "design") rep(degf(des), nrow(b)) else
          sapply(b$SEX, function(s) degf(subset(des, SEX == s)))
        ci_rows[[length(ci_rows) + 1]] <- data.frame(design = name, method = m, df_mode = dfmode,
          SEX = c("_T", b$SEX), GRP = level_, estimate = c(unname(coef(whole)), b$ind),
          ci_low = c(attr(whole, "ci")[1], b$ci_l), ci_high = c(attr(whole, "ci")[2], b$ci_u),
          df = c(degf(des), dfs))
      }
      # Small domains, whose replicate weights have a lower rank than the design's: each
      # stratum (written in the SEX column, df_mode "stratum").
      if (rep) for (m in c("mean", "beta")) {
        b <- svyby(~ind, ~STRATUM, des, svyciprop, method = m, level = level, vartype = "ci")
        ci_rows[[length(ci_rows) + 1]] <- data.frame(design = name, method = m, df_mode = "stratum",
          SEX = b$STRATUM, GRP = level_, estimate = b$ind, ci_low = b$ci_l, ci_high = b$ci_u,
          df = sapply(b$STRATUM, function(s) degf(subset(des, STRATUM == s))))
      }
    }
  }
  ci <- do.call(rbind, ci_rows)
  for (c in c("estimate", "ci_low", "ci_high")) ci[[c]] <- sprintf("%.17g", ci[[c]])
  write.csv(ci, out_ciprop, row.names = FALSE, quote = FALSE)
  all <- do.call(rbind, res)
  # A category absent from a domain is a share of 0 (SE 0), published as such.
  for (c in c("estimate", "se", "ci_low_t", "ci_high_t", "deff")) all[[c]] <- sprintf("%.17g", all[[c]])
  write.csv(all, out, row.names = FALSE, quote = FALSE)
  cat("R", R.version.string, "survey", as.character(packageVersion("survey")), ":", nrow(all), "cells\n")
}

# Calibrated designs: each calibration of `calibrations` on each design of `cal_designs`, the
# margins in tests/fixtures/survey_designs/margin_*.csv. Writes the estimates (as `expect`) and
# the g-weights of each class (SEX × GRP).
calibrations <- list(
  ps = list(fun = "poststratify"),
  lin = list(fun = "linear"),
  lin_b = list(fun = "linear", bounds = c(0.9, 1.3)),
  rak_trim = list(fun = "raking", trim = c(0.95, 1.2)),  # R ignores trim on unbounded linear
  rak = list(fun = "raking"),
  rak_b = list(fun = "raking", bounds = c(0.9, 1.3)),
  logit = list(fun = "logit", bounds = c(0.8, 1.5)),
  # rake(): R's defaults (epsilon 1, 10 passes), a tight relative epsilon, and 2 passes that do
  # not converge (R warns and keeps them).
  ipf = list(fun = "ipf"),
  ipf_tight = list(fun = "ipf", epsilon = 1e-12),
  ipf_2 = list(fun = "ipf", epsilon = 1e-12, maxit = 2)
)
cal_designs <- c("strat", "strat_fpc", "clus", "strat_clus", "two_stage_fpc", "lonely_adjust", "lonely_average",
  "jk1", "boot")
calibrated <- function(path, out, out_g) {
  d <- read.csv(path, colClasses = c(sex = "character", grp = "character"))
  d$one <- 1
  d$SEX <- d$sex
  d$GRP <- d$grp
  d$STRATUM <- d$stratum
  dir <- dirname(path)
  m_sex <- read.csv(file.path(dir, "margin_sex.csv"), colClasses = c(SEX = "character"))
  m_grp <- read.csv(file.path(dir, "margin_grp.csv"), colClasses = c(GRP = "character"))
  m_both <- read.csv(file.path(dir, "margin_sex_grp.csv"), colClasses = c(SEX = "character", GRP = "character"))
  names(m_both)[3] <- "Freq"
  pop <- c(`(Intercept)` = sum(m_sex$total), SEXM = m_sex$total[m_sex$SEX == "M"],
    GRPB = m_grp$total[m_grp$GRP == "B"], GRPC = m_grp$total[m_grp$GRP == "C"])
  base <- list(
    strat = svydesign(ids = ~1, strata = ~stratum, weights = ~weight, data = d),
    strat_fpc = svydesign(ids = ~1, strata = ~stratum, fpc = ~n_elem_pop, weights = ~weight, data = d),
    clus = svydesign(ids = ~psu, weights = ~weight, data = d),
    strat_clus = svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE),
    two_stage_fpc = svydesign(ids = ~psu + ssu, strata = ~stratum, fpc = ~n_psu_pop + n_ssu_pop,
      weights = ~weight, data = d, nest = TRUE),
    lonely_adjust = svydesign(ids = ~psu, strata = ~stratum_l, weights = ~weight, data = d, nest = TRUE),
    lonely_average = svydesign(ids = ~psu, strata = ~stratum_l, weights = ~weight, data = d, nest = TRUE),
    jk1 = suppressWarnings(svrepdesign(data = d, weights = ~weight, repweights = "^jk1_", type = "JK1", combined.weights = TRUE)),
    boot = svrepdesign(data = d, weights = ~weight, repweights = "^boot_", type = "bootstrap", combined.weights = TRUE)
  )
  res <- list()
  gs <- list()
  for (dn in cal_designs) for (cn in names(calibrations)) {
    # Bounds no replicate can meet: R warns and keeps unconverged replicate weights, migstat
    # rejects the source; those are tested apart.
    if (dn %in% c("jk1", "boot") && cn %in% c("lin_b", "rak_b", "logit")) next
    options(survey.lonely.psu = switch(dn, lonely_adjust = "adjust", lonely_average = "average", "fail"))
    spec <- calibrations[[cn]]
    des0 <- base[[dn]]
    des <- if (spec$fun == "poststratify") {
      postStratify(des0, ~SEX + GRP, m_both)
    } else if (spec$fun == "ipf") {
      ctl <- list(maxit = if (is.null(spec$maxit)) 10 else spec$maxit,
        epsilon = if (is.null(spec$epsilon)) 1 else spec$epsilon)
      suppressWarnings(rake(des0, list(~SEX, ~GRP), list(data.frame(SEX = m_sex$SEX, Freq = m_sex$total),
        data.frame(GRP = m_grp$GRP, Freq = m_grp$total)), control = ctl))
    } else {
      bounds <- if (is.null(spec$bounds)) c(-Inf, Inf) else spec$bounds
      # compress = FALSE: R's unbounded linear calibration of replicate weights fails on NA.
      suppressMessages(calibrate(des0, ~SEX + GRP, pop, calfun = spec$fun, bounds = bounds, trim = spec$trim,
        compress = FALSE))
    }
    name <- paste0(dn, "_", cn)
    g <- weights(des, "sampling") / weights(des0, "sampling")
    cls <- unique(data.frame(SEX = d$SEX, GRP = d$GRP, g = sprintf("%.17g", g)))
    gs[[length(gs) + 1]] <- data.frame(design = name, cls[order(cls$SEX, cls$GRP), ])
    cube <- function(table, dims, est) {
      for (k in 0:(2^length(dims) - 1)) {
        totalled <- bitwAnd(k, 2^(0:(length(dims) - 1))) != 0
        keep <- dims[!totalled]
        if (length(keep) == 0) {
          t <- est(NULL)
          cells <- data.frame(row.names = 1)
        } else {
          t <- est(as.formula(paste("~", paste(keep, collapse = "+"))))
          cells <- as.data.frame(t)[keep]
        }
        ci <- confint(t, df = degf(des))
        r <- data.frame(design = name, table = table, cells, estimate = unname(coef(t)), se = unname(SE(t)),
          ci_low_t = ci[, 1], ci_high_t = ci[, 2], df = degf(des))
        for (dd in dims[totalled]) r[[dd]] <- "_T"
        for (dd in c("SEX", "GRP", "STRATUM")) if (is.null(r[[dd]])) r[[dd]] <- NA
        res[[length(res) + 1]] <<- r[c("design", "table", "SEX", "GRP", "STRATUM", "estimate", "se", "ci_low_t", "ci_high_t", "df")]
      }
    }
    by <- function(f, fun, ...) function(b) {
      if (is.null(b)) fun(f, des, ...) else svyby(f, b, des, fun, ...)
    }
    cube("population", "STRATUM", by(~one, svytotal))
    cube("total_y", c("SEX", "GRP"), by(~y, svytotal, na.rm = TRUE))
    cube("mean_y", c("SEX", "GRP"), by(~y, svymean, na.rm = TRUE))
    for (level_ in sort(unique(d$grp))) {
      des <- update(des, ind = as.numeric(GRP == level_))
      n0 <- length(res)
      cube("share_grp_stratum", "STRATUM", by(~ind, svymean))
      for (i in (n0 + 1):length(res)) res[[i]]$GRP <- level_
      # The profile-likelihood interval (linearized designs only: NA on replicate ones), each
      # stratum a subset with its own df as svyby gives it.
      if (!inherits(des, "svyrep.design")) {
        # One subset at a time (svyby's subsets): R stops on a share of 0 or 1 (NA here).
        lik <- function(sub) {
          r <- tryCatch(suppressWarnings(svyciprop(~ind, sub, method = "likelihood")), error = function(e) NULL)
          if (is.null(r)) c(NA, NA) else unname(attr(r, "ci"))
        }
        strata <- sort(unique(d$STRATUM))
        subs <- c(list(des), lapply(strata, function(s) subset(des, STRATUM == s)))
        ci <- t(sapply(subs, lik))
        res[[length(res) + 1]] <- data.frame(design = name, table = "share_grp_stratum_lik", SEX = NA,
          GRP = level_, STRATUM = c("_T", strata), estimate = sapply(subs, function(s) unname(coef(svymean(~ind, s)))),
          se = sapply(subs, function(s) unname(SE(svymean(~ind, s)))), ci_low_t = ci[, 1], ci_high_t = ci[, 2],
          df = sapply(subs, degf))
      }
    }
  }
  all <- do.call(rbind, res)
  for (c in c("estimate", "se", "ci_low_t", "ci_high_t")) all[[c]] <- sprintf("%.17g", all[[c]])
  write.csv(all, out, row.names = FALSE, quote = FALSE)
  write.csv(do.call(rbind, gs), out_g, row.names = FALSE, quote = FALSE)
  cat("R", R.version.string, "survey", as.character(packageVersion("survey")), ":", nrow(all), "calibrated cells\n")
}

# Quantiles (svyquantile through svyby, as migstat publishes every margin of SEX × GRP) on
# linearized, calibrated and replicate designs: each rule, each interval type, both choices of
# degrees of freedom, t and normal intervals. Table names: q-<var>-<rule>-<interval>-<100·p>-<df>.
quantile_cases <- function(rep, calibrated = FALSE) {
  cases <- list()
  add <- function(var, rule, itype, p, dfmode) {
    cases[[length(cases) + 1]] <<- list(var = var, rule = rule, itype = itype, p = p, dfmode = dfmode)
  }
  for (var in c("y", "x")) {
    if (rep) {
      # A replicate design's domains have their own df (the rank of their replicate weights).
      for (rule in c("math", "hf7")) for (itype in c("mean", "quantile")) add(var, rule, itype, 0.5, "design")
      add(var, "school", "quantile", 0.25, "design")
      add(var, "math", "mean", 0.5, "domain")
      add(var, "hf4", "quantile", 0.5, "domain")
    } else {
      for (rule in c("math", "school", "hf3", "hf4", "hf5", "hf6", "hf7", "hf8", "hf9")) {
        add(var, rule, "mean", 0.5, "domain")
      }
      for (itype in c("beta", "xlogit", "asin")) add(var, "math", itype, 0.5, "domain")
      add(var, "hf7", "mean", 0.25, "domain")
      add(var, "math", "xlogit", 0.9, "design")
      # Francisco and Fuller's score interval (not on calibrated designs: see migstat's README).
      if (!calibrated) {
        add(var, "math", "score", 0.5, "domain")
        add(var, "hf7", "score", 0.25, "design")
      }
    }
  }
  cases
}

quantiles <- function(path, out) {
  d <- read.csv(path, colClasses = c(sex = "character", grp = "character"))
  d$SEX <- d$sex
  d$GRP <- d$grp
  designs <- make_designs(d)[c("strat", "strat_fpc", "clus", "clus_fpc_90", "strat_clus", "two_stage_fpc",
    "strat_fpc_only", "lonely_adjust", "lonely_average", "jk1", "boot")]
  m_sex <- read.csv(file.path(dirname(path), "margin_sex.csv"), colClasses = c(SEX = "character"))
  m_grp <- read.csv(file.path(dirname(path), "margin_grp.csv"), colClasses = c(GRP = "character"))
  pop <- c(`(Intercept)` = sum(m_sex$total), SEXM = m_sex$total[m_sex$SEX == "M"],
    GRPB = m_grp$total[m_grp$GRP == "B"], GRPC = m_grp$total[m_grp$GRP == "C"])
  # Calibrated: raking on a clustered design, bounded linear on a two-stage one (migstat
  # names them <design>_<calibration>, as in `calibrated`).
  designs$strat_clus_rak <- list(calibrate(designs$strat_clus[[1]], ~SEX + GRP, pop, calfun = "raking"))
  designs$two_stage_fpc_lin_b <- list(calibrate(designs$two_stage_fpc[[1]], ~SEX + GRP, pop,
    calfun = "linear", bounds = c(0.9, 1.3)))
  rows <- list()
  for (name in names(designs)) {
    spec <- designs[[name]]
    des <- spec[[1]]
    level <- if (is.null(spec$level)) 0.95 else spec$level
    options(survey.lonely.psu = if (is.null(spec$lonely)) "fail" else spec$lonely)
    rep <- inherits(des, "svyrep.design")
    for (cs in quantile_cases(rep, calibrated = name %in% c("strat_clus_rak", "two_stage_fpc_lin_b"))) {
      f <- as.formula(paste0("~", cs$var))
      table <- sprintf("q-%s-%s-%s-%d-%s", cs$var, cs$rule, cs$itype, round(100 * cs$p), cs$dfmode)
      est <- function(by, df) {
        args <- list(f, quantiles = cs$p, qrule = cs$rule, interval.type = cs$itype, na.rm = TRUE,
          ci = TRUE, alpha = 1 - level)
        if (!is.null(df)) args$df <- df
        one <- function(sub) {
          q <- tryCatch(suppressWarnings(do.call(svyquantile, c(list(design = sub), args)))[[1]],
            error = function(e) NULL)
          # R's score test stops where its statistic has one sign over the whole range.
          if (is.null(q)) {
            q <- suppressWarnings(do.call(svyquantile, c(list(design = sub),
              modifyList(args, list(ci = FALSE)))))[[1]]
            return(data.frame(estimate = q[1, 1], ci_l = NA, ci_u = NA, se = NA))
          }
          data.frame(estimate = q[1, 1], ci_l = q[1, 2], ci_u = q[1, 3], se = q[1, 4])
        }
        if (is.null(by)) {
          one(des)
        } else if (cs$itype == "score") {
          # One domain at a time (svyby's subsets): R's uniroot fails in some of them.
          keys <- unique(d[all.vars(by)])
          keys <- keys[do.call(order, unname(as.list(keys))), , drop = FALSE]
          do.call(rbind, lapply(seq_len(nrow(keys)), function(i) {
            rows <- rep(TRUE, nrow(d))
            for (v in all.vars(by)) rows <- rows & d[[v]] == keys[[v]][i]
            cbind(keys[i, , drop = FALSE], one(des[rows, ]))
          }))
        } else {
          b <- suppressWarnings(do.call(svyby, c(list(formula = f, by = by, design = des, FUN = svyquantile,
            vartype = c("se", "ci")), args[-1])))
          data.frame(b[all.vars(by)], estimate = b[[cs$var]], ci_l = b$ci_l, ci_u = b$ci_u,
            se = b[[paste0("se.", cs$var)]])
        }
      }
      dims <- c("SEX", "GRP")
      for (k in 0:3) {
        totalled <- bitwAnd(k, c(1, 2)) != 0
        keep <- dims[!totalled]
        by <- if (length(keep)) as.formula(paste("~", paste(keep, collapse = "+"))) else NULL
        t <- est(by, if (cs$dfmode == "design") degf(des) else NULL)
        z <- est(by, Inf)
        for (dd in dims[totalled]) t[[dd]] <- "_T"
        # Each cell's degrees of freedom: the subset's (records with the variable), or the design's.
        t$df <- sapply(seq_len(nrow(t)), function(i) {
          if (cs$dfmode == "design") return(degf(des))
          keep_rows <- !is.na(d[[cs$var]])
          for (dd in keep) keep_rows <- keep_rows & d[[dd]] == t[[dd]][i]
          degf(des[keep_rows, ])
        })
        rows[[length(rows) + 1]] <- data.frame(design = name, table = table, SEX = t$SEX, GRP = t$GRP,
          estimate = t$estimate, se = t$se, ci_low_t = t$ci_l, ci_high_t = t$ci_u, ci_low = z$ci_l,
          ci_high = z$ci_u, df = t$df)
      }
    }
  }
  all <- do.call(rbind, rows)
  for (c in c("estimate", "se", "ci_low_t", "ci_high_t", "ci_low", "ci_high")) all[[c]] <- sprintf("%.17g", all[[c]])
  write.csv(all, out, row.names = FALSE, quote = FALSE)
  cat("R", R.version.string, "survey", as.character(packageVersion("survey")), ":", nrow(all), "quantile cells\n")
}

# Contrasts of a table's estimates across one dimension (svycontrast on svyby(…, covmat =
# TRUE)): women minus men and women over men of mean x in each GRP; A − B/2 − C/2 of total x
# in each SEX; of the shares of GRP, women minus men in each GRP and A − B in each SEX. (x has
# no missing value: R's svyby cannot give covmat with na.rm.)
contrasts <- function(path, out) {
  d <- read.csv(path, colClasses = c(sex = "character", grp = "character"))
  d$SEX <- d$sex
  d$GRP <- d$grp
  designs <- make_designs(d)[c("strat", "strat_fpc", "clus", "two_stage_fpc", "strat_fpc_only",
    "lonely_adjust", "lonely_average", "jk1", "boot")]
  # (Calibrated designs are left out: R 4.1's svyby(…, covmat = TRUE) fails on them.)
  rows <- list()
  add <- function(name, table, cell_dim, cell, ct) {
    rows[[length(rows) + 1]] <<- data.frame(design = name, table = table,
      SEX = if (cell_dim == "SEX") cell else NA, GRP = if (cell_dim == "GRP") cell else NA,
      estimate = sprintf("%.17g", unname(coef(ct))), se = sprintf("%.17g", unname(SE(ct))))
  }
  for (name in names(designs)) {
    spec <- designs[[name]]
    des <- spec[[1]]
    options(survey.lonely.psu = if (is.null(spec$lonely)) "fail" else spec$lonely)
    dy <- des
    # Means across SEX, in each GRP and in all.
    b <- svyby(~x, ~SEX + GRP, dy, svymean, covmat = TRUE)
    b0 <- svyby(~x, ~SEX, dy, svymean, covmat = TRUE)
    for (g in c("A", "B", "C")) {
      add(name, "c_mean_sex", "GRP", g, svycontrast(b, setNames(c(1, -1), paste0(c("F.", "M."), g))))
      add(name, "c_mean_ratio", "GRP", g, svycontrast(b, parse(text = sprintf("`F.%s` / `M.%s`", g, g))[[1]]))
    }
    add(name, "c_mean_sex", "GRP", "_T", svycontrast(b0, c(F = 1, M = -1)))
    add(name, "c_mean_ratio", "GRP", "_T", svycontrast(b0, quote(F / M)))
    # Totals across GRP, in each SEX and in all.
    t <- svyby(~x, ~GRP + SEX, dy, svytotal, covmat = TRUE)
    t0 <- svyby(~x, ~GRP, dy, svytotal, covmat = TRUE)
    for (s_ in c("F", "M")) {
      add(name, "c_total_grp", "SEX", s_, svycontrast(t, setNames(c(1, -0.5, -0.5), paste0(c("A.", "B.", "C."), s_))))
    }
    add(name, "c_total_grp", "SEX", "_T", svycontrast(t0, c(A = 1, B = -0.5, C = -0.5)))
    # Shares of GRP: across SEX in each GRP; across GRP (A − B) in each SEX and in all.
    sh <- svyby(~GRP, ~SEX, des, svymean, covmat = TRUE)
    for (g in c("A", "B", "C")) {
      add(name, "c_share_sex", "GRP", g, svycontrast(sh, setNames(c(1, -1), paste0(c("F:GRP", "M:GRP"), g))))
    }
    for (s_ in c("F", "M")) {
      add(name, "c_share_grp", "SEX", s_, svycontrast(sh, setNames(c(1, -1), paste0(s_, ":GRP", c("A", "B")))))
    }
    add(name, "c_share_grp", "SEX", "_T", svycontrast(svymean(~GRP, des), c(GRPA = 1, GRPB = -1)))
  }
  all <- do.call(rbind, rows)
  write.csv(all, out, row.names = FALSE, quote = FALSE, na = "")
  cat("R", R.version.string, "survey", as.character(packageVersion("survey")), ":", nrow(all), "contrasts\n")
}

# A large JKn design (hundreds of replicates, weights over six orders of magnitude): R's df is
# the rank of its replicate weights by qr() less one. The fixture keeps the design columns only;
# the test builds the JKn weights from them (PSU j of stratum h dropped, the rest of h scaled by
# n_h/(n_h - 1)), as as.svrepdesign does, and compares df, totals and SEs.
jkn <- function(fixture, out) {
  set.seed(20261204)
  rows <- list()
  for (h in 1:150) {
    np <- sample(c(2, 2, 3, 4, 5), 1)
    for (p in 1:np) {
      k <- sample(1:8, 1)
      rows[[length(rows) + 1]] <- data.frame(stratum = sprintf("H%03d", h), psu = sprintf("H%03d-P%d", h, p), k = k)
    }
  }
  d <- do.call(rbind, lapply(rows, function(r) r[rep(1, r$k), ]))
  n <- nrow(d)
  d$id <- sprintf("J%05d", seq_len(n))
  d$weight <- signif(exp(rnorm(n, 5, 3)), 6)
  d$sex <- sample(c("M", "F"), n, replace = TRUE)
  d$y <- round(rgamma(n, 2, 0.01), 1)
  d <- d[c("id", "stratum", "psu", "weight", "sex", "y")]
  write.csv(d, fixture, row.names = FALSE, quote = FALSE)
  d <- read.csv(fixture, colClasses = c(sex = "character"))
  jk <- as.svrepdesign(svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE),
    type = "JKn", compress = FALSE)
  w <- weights(jk, "analysis")
  t <- svyby(~y, ~sex, jk, svytotal)
  whole <- svytotal(~y, jk)
  res <- data.frame(SEX = c(t$sex, "_T"), estimate = sprintf("%.17g", c(t$y, coef(whole))),
    se = sprintf("%.17g", c(t$se, SE(whole))), df = degf(jk), replicates = ncol(w),
    rank = qr(w, tol = 1e-5)$rank)
  write.csv(res, out, row.names = FALSE, quote = FALSE)
  cat("R", R.version.string, "survey", as.character(packageVersion("survey")), ": JKn with", ncol(w),
    "replicates, degf", degf(jk), "\n")
}

# Nonresponse adjustment by weighting classes. Status from `x`: 1-4 respondents, 5 ineligible,
# 6 nonrespondents. Linearized designs: the estimator Σ_k N̂_k·Ŷ_rk/N̂_rk (then, with
# post-stratification, Σ_p N_p·Ŷ_p/N̂_p) written as a function of the full sample's totals and
# differentiated by svycontrast (the delta method); replicate designs: each replicate's weights
# adjusted on their own (svrep's adjust_weights_for_nonresponse, written out), then
# svrepdesign, calibrate or postStratify and svyby as usual.
nonresponse <- function(path, out) {
  d <- read.csv(path, colClasses = c(sex = "character", grp = "character"))
  d$one <- 1
  d$SEX <- d$sex
  d$GRP <- d$grp
  d$STRATUM <- d$stratum
  dir <- dirname(path)
  m_sex <- read.csv(file.path(dir, "margin_sex.csv"), colClasses = c(SEX = "character"))
  m_grp <- read.csv(file.path(dir, "margin_grp.csv"), colClasses = c(GRP = "character"))
  m_both <- read.csv(file.path(dir, "margin_sex_grp.csv"), colClasses = c(SEX = "character", GRP = "character"))
  resp <- d$x %in% 1:4
  elig <- d$x != 5
  classes <- list(STRATUM = d$STRATUM, SEX_GRP = paste(d$SEX, d$GRP))
  ps <- paste(d$SEX, d$GRP)
  ps_total <- setNames(m_both$total, paste(m_both$SEX, m_both$GRP))
  pop <- c(`(Intercept)` = sum(m_sex$total), SEXM = m_sex$total[m_sex$SEX == "M"],
    GRPB = m_grp$total[m_grp$GRP == "B"], GRPC = m_grp$total[m_grp$GRP == "C"])
  cases <- list(
    list(name = "strat_clus_nr", cls = "STRATUM", cal = "none",
      des = function(d) svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE)),
    list(name = "two_stage_fpc_nr", cls = "STRATUM", cal = "none",
      des = function(d) svydesign(ids = ~psu + ssu, strata = ~stratum, fpc = ~n_psu_pop + n_ssu_pop,
        weights = ~weight, data = d, nest = TRUE)),
    list(name = "clus_nr_sexgrp", cls = "SEX_GRP", cal = "none",
      des = function(d) svydesign(ids = ~psu, weights = ~weight, data = d)),
    list(name = "strat_fpc_only_nr", cls = "STRATUM", cal = "none",
      des = function(d) svydesign(ids = ~1, strata = ~stratum, fpc = ~n_elem_pop, data = d)),
    list(name = "strat_clus_nr_ps", cls = "STRATUM", cal = "ps",
      des = function(d) svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE)),
    list(name = "jk1_nr", cls = "STRATUM", cal = "none", rep = "^jk1_", type = "JK1"),
    list(name = "boot_nr_sexgrp", cls = "SEX_GRP", cal = "none", rep = "^boot_", type = "bootstrap"),
    list(name = "jk1_nr_rak", cls = "STRATUM", cal = "raking", rep = "^jk1_", type = "JK1"),
    list(name = "boot_nr_ps", cls = "STRATUM", cal = "ps", rep = "^boot_", type = "bootstrap")
  )
  tables <- list(
    list(table = "population", dims = "STRATUM", y = "one", kind = "total"),
    list(table = "total_y", dims = c("SEX", "GRP"), y = "y", kind = "total"),
    list(table = "mean_y", dims = c("SEX", "GRP"), y = "y", kind = "mean"),
    list(table = "share_grp_stratum", dims = "STRATUM", y = "GRP", kind = "share")
  )
  res <- list()
  row <- function(name, table, cell, est, se, df) {
    r <- data.frame(design = name, table = table, SEX = NA, GRP = NA, STRATUM = NA,
      estimate = est, se = se, df = df)
    for (k in names(cell)) r[[k]] <- cell[[k]]
    res[[length(res) + 1]] <<- r
  }
  # Every cell of a table: each subset of its dimensions (the others `_T`), each combination
  # of codes among the respondents.
  cells <- function(dims) {
    out <- list()
    for (k in 0:(2^length(dims) - 1)) {
      keep <- dims[bitwAnd(k, 2^(0:(length(dims) - 1))) == 0]
      combos <- if (length(keep) == 0) data.frame(row.names = 1) else unique(d[resp, keep, drop = FALSE])
      for (i in seq_len(nrow(combos))) {
        cell <- as.list(combos[i, , drop = FALSE])
        for (dd in setdiff(dims, keep)) cell[[dd]] <- "_T"
        inD <- rep(TRUE, nrow(d))
        for (dd in keep) inD <- inD & d[[dd]] == cell[[dd]]
        out[[length(out) + 1]] <- list(cell = cell, inD = inD)
      }
    }
    out
  }
  for (cs in cases) {
    cls <- classes[[cs$cls]]
    if (is.null(cs$rep)) {
      K <- sort(unique(cls[elig]))
      P <- sort(unique(ps))
      des0 <- cs$des(d)
      df0 <- degf(des0)
      # The adjusted estimator of the total of v (respondents' values) as an R expression over
      # the totals of the variables it adds to `vars`.
      vars <- list()
      for (k in seq_along(K)) {
        vars[[paste0("A", k)]] <- as.numeric(elig & cls == K[k])
        vars[[paste0("R", k)]] <- as.numeric(resp & cls == K[k])
        for (p in seq_along(P)) vars[[paste0("C", k, "_", p)]] <- as.numeric(resp & cls == K[k] & ps == P[p])
      }
      total <- function(v, nm) {
        if (cs$cal == "none") {
          terms <- character(0)
          for (k in seq_along(K)) {
            vars[[paste0(nm, k)]] <<- ifelse(resp & cls == K[k], v, 0)
            terms <- c(terms, sprintf("A%d*%s%d/R%d", k, nm, k, k))
          }
          paste0("(", paste(terms, collapse = "+"), ")")
        } else {
          pterms <- character(0)
          for (p in seq_along(P)) {
            num <- character(0)
            den <- character(0)
            for (k in seq_along(K)) {
              vars[[sprintf("%s%d_%d", nm, k, p)]] <<- ifelse(resp & cls == K[k] & ps == P[p], v, 0)
              num <- c(num, sprintf("A%d*%s%d_%d/R%d", k, nm, k, p, k))
              den <- c(den, sprintf("A%d*C%d_%d/R%d", k, k, p, k))
            }
            pterms <- c(pterms, sprintf("%.17g*(%s)/(%s)", ps_total[[P[p]]], paste(num, collapse = "+"),
              paste(den, collapse = "+")))
          }
          paste0("(", paste(pterms, collapse = "+"), ")")
        }
      }
      for (tb in tables) for (cl in cells(tb$dims)) {
        ok <- if (tb$y == "y") !is.na(d$y) else rep(TRUE, nrow(d))
        yv <- ifelse(ok, if (tb$y == "y") d$y else 1, 0)
        inD <- cl$inD
        cats <- if (tb$kind == "share") sort(unique(d$GRP)) else NA
        for (g in cats) {
          vars <- vars[grepl("^[ARC][0-9]", names(vars))]
          if (tb$kind == "total") {
            expr <- total(yv * inD, "N")
          } else if (tb$kind == "mean") {
            expr <- paste0(total(yv * inD, "N"), "/", total(as.numeric(ok & inD), "D"))
          } else {
            expr <- paste0(total(as.numeric(inD & d$GRP == g), "N"), "/", total(as.numeric(inD), "D"))
          }
          des <- des0
          des$variables <- cbind(des$variables, as.data.frame(vars))
          t <- svytotal(as.formula(paste("~", paste(names(vars), collapse = "+"))), des)
          e <- svycontrast(t, list(est = parse(text = expr)[[1]]))
          cell <- cl$cell
          if (tb$kind == "share") cell$GRP <- g
          row(cs$name, tb$table, cell, unname(coef(e)), unname(SE(e)), df0)
        }
      }
    } else {
      W <- as.matrix(d[grep(cs$rep, names(d))])
      adj <- function(w) {
        A <- tapply(w * elig, cls, sum)
        R <- tapply(w * resp, cls, sum)
        f <- ifelse(resp, (A / R)[cls], 0)
        f[!is.finite(f)] <- 0
        w * f
      }
      w0 <- adj(d$weight)
      Wa <- apply(W, 2, adj)
      dr <- d[resp, ]
      des <- svrepdesign(data = dr, weights = w0[resp], repweights = Wa[resp, ], type = cs$type,
        combined.weights = TRUE)
      if (cs$cal == "ps") {
        m <- m_both
        names(m)[3] <- "Freq"
        des <- postStratify(des, ~SEX + GRP, m)
      } else if (cs$cal == "raking") {
        des <- calibrate(des, ~SEX + GRP, pop, calfun = "raking", compress = FALSE)
      }
      df0 <- degf(des)
      for (tb in tables) {
        if (tb$kind == "share") {
          for (g in sort(unique(d$GRP))) {
            des2 <- update(des, ind = as.numeric(GRP == g))
            for (cl in list(NULL, ~STRATUM)) {
              t <- if (is.null(cl)) svymean(~ind, des2) else svyby(~ind, cl, des2, svymean)
              st <- if (is.null(cl)) "_T" else as.character(t$STRATUM)
              for (i in seq_along(st)) row(cs$name, tb$table, list(GRP = g, STRATUM = st[i]),
                unname(coef(t))[i], unname(SE(t))[i], df0)
            }
          }
          next
        }
        fun <- if (tb$kind == "total") svytotal else svymean
        f <- as.formula(paste("~", tb$y))
        for (k in 0:(2^length(tb$dims) - 1)) {
          keep <- tb$dims[bitwAnd(k, 2^(0:(length(tb$dims) - 1))) == 0]
          if (length(keep) == 0) {
            t <- fun(f, des, na.rm = TRUE)
            row(cs$name, tb$table, setNames(as.list(rep("_T", length(tb$dims))), tb$dims),
              unname(coef(t)), unname(SE(t)), df0)
          } else {
            t <- svyby(f, as.formula(paste("~", paste(keep, collapse = "+"))), des, fun, na.rm = TRUE)
            for (i in seq_len(nrow(t))) {
              cell <- setNames(as.list(rep("_T", length(tb$dims))), tb$dims)
              for (kk in keep) cell[[kk]] <- as.character(t[[kk]][i])
              row(cs$name, tb$table, cell, unname(coef(t))[i], unname(SE(t))[i], df0)
            }
          }
        }
      }
    }
  }
  all <- do.call(rbind, res)
  for (c in c("estimate", "se")) all[[c]] <- sprintf("%.17g", all[[c]])
  write.csv(all, out, row.names = FALSE, quote = FALSE)
  cat("R", R.version.string, "survey", as.character(packageVersion("survey")), ":", nrow(all), "nonresponse-adjusted cells\n")
}

# Covariances of every cell of three tables (total and mean of y by SEX, share of GRP within
# SEX), margins included: each cell a function of totals of domain-interacted variables,
# svycontrast over all of them at once (replicates: on each replicate's totals), vcov.
covariances <- function(path, out) {
  d <- read.csv(path, colClasses = c(sex = "character", grp = "character"))
  d$SEX <- d$sex
  d$GRP <- d$grp
  dir <- dirname(path)
  m_sex <- read.csv(file.path(dir, "margin_sex.csv"), colClasses = c(SEX = "character"))
  m_grp <- read.csv(file.path(dir, "margin_grp.csv"), colClasses = c(GRP = "character"))
  m_both <- read.csv(file.path(dir, "margin_sex_grp.csv"), colClasses = c(SEX = "character", GRP = "character"))
  names(m_both)[3] <- "Freq"
  pop <- c(`(Intercept)` = sum(m_sex$total), SEXM = m_sex$total[m_sex$SEX == "M"],
    GRPB = m_grp$total[m_grp$GRP == "B"], GRPC = m_grp$total[m_grp$GRP == "C"])
  sexes <- c("F", "M", "_T")
  insex <- function(s) if (s == "_T") rep(TRUE, nrow(d)) else d$SEX == s
  v <- list()
  exprs <- list()
  for (s in sexes) {
    v[[paste0("y_", s)]] <- ifelse(is.na(d$y), 0, d$y) * insex(s)
    v[[paste0("ok_", s)]] <- as.numeric(!is.na(d$y) & insex(s))
    v[[paste0("one_", s)]] <- as.numeric(insex(s))
    for (g in sort(unique(d$GRP))) v[[paste0("g", g, "_", s)]] <- as.numeric(insex(s) & d$GRP == g)
  }
  for (s in sexes) exprs[[paste0("total_y|SEX=", s)]] <- as.name(paste0("y_", s))
  for (s in sexes) exprs[[paste0("mean_y|SEX=", s)]] <- call("/", as.name(paste0("y_", s)), as.name(paste0("ok_", s)))
  for (s in sexes) for (g in sort(unique(d$GRP))) exprs[[sprintf("share_grp|GRP=%s;SEX=%s", g, s)]] <-
    call("/", as.name(paste0("g", g, "_", s)), as.name(paste0("one_", s)))
  d <- cbind(d, as.data.frame(v))
  f <- as.formula(paste("~", paste(names(v), collapse = "+")))
  designs <- list(
    strat_clus = function() svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE),
    two_stage_fpc = function() svydesign(ids = ~psu + ssu, strata = ~stratum, fpc = ~n_psu_pop + n_ssu_pop,
      weights = ~weight, data = d, nest = TRUE),
    lonely_average = function() svydesign(ids = ~psu, strata = ~stratum_l, weights = ~weight, data = d, nest = TRUE),
    strat_clus_rak = function() calibrate(svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d,
      nest = TRUE), ~SEX + GRP, pop, calfun = "raking"),
    jk1 = function() suppressWarnings(svrepdesign(data = d, weights = ~weight, repweights = "^jk1_", type = "JK1",
      combined.weights = TRUE)),
    boot = function() svrepdesign(data = d, weights = ~weight, repweights = "^boot_", type = "bootstrap",
      combined.weights = TRUE),
    boot_ps = function() postStratify(svrepdesign(data = d, weights = ~weight, repweights = "^boot_",
      type = "bootstrap", combined.weights = TRUE), ~SEX + GRP, m_both)
  )
  res <- list()
  for (dn in names(designs)) {
    options(survey.lonely.psu = if (dn == "lonely_average") "average" else "fail")
    des <- designs[[dn]]()
    t <- if (inherits(des, "svyrep.design")) svytotal(f, des, return.replicates = TRUE) else svytotal(f, des)
    con <- svycontrast(t, exprs)
    V <- vcov(con)
    k <- names(exprs)
    for (i in seq_along(k)) for (j in seq_len(i)) {
      a <- strsplit(k[i], "|", fixed = TRUE)[[1]]
      b <- strsplit(k[j], "|", fixed = TRUE)[[1]]
      res[[length(res) + 1]] <- data.frame(design = dn, table_a = a[1], cell_a = a[2], table_b = b[1],
        cell_b = b[2], covariance = sprintf("%.17g", V[i, j]))
    }
  }
  all <- do.call(rbind, res)
  write.csv(all, out, row.names = FALSE, quote = FALSE)
  cat("R", R.version.string, "survey", as.character(packageVersion("survey")), ":", nrow(all), "covariances\n")
}

if (args[1] == "covariances") {
  covariances(args[2], args[3])
} else if (args[1] == "nonresponse") {
  nonresponse(args[2], args[3])
} else if (args[1] == "jkn") {
  jkn(args[2], args[3])
} else if (args[1] == "contrasts") {
  contrasts(args[2], args[3])
} else if (args[1] == "quantiles") {
  quantiles(args[2], args[3])
} else if (args[1] == "generate") {
  generate(args[2])
} else if (args[1] == "calibrated") {
  calibrated(args[2], args[3], args[4])
} else {
  expect(args[2], args[3], args[4])
}
