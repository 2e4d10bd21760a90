# Reference values for migstat's survey estimates, from R's survey package (Lumley).
# Run by tests/r/make_survey_golden.sh; its output is committed as tests/golden/survey_population_r.csv
# so the tests compare against R without needing R.
suppressPackageStartupMessages(library(survey))
options(survey.lonely.psu = "fail")
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = "character")
d$weight <- as.numeric(d$weight)
d$AGE <- as.numeric(d$AGE)
d$one <- 1
# The residents' weights raked to the census margins shipped with the sample; the emigrants
# abroad are a category of their own in each margin, its total their weighted sum.
margins <- commandArgs(trailingOnly = FALSE)
census <- file.path(dirname(sub("^--file=", "", grep("^--file=", margins, value = TRUE))), "../../sample_data/census")
sa_tot <- read.csv(file.path(census, "residents_sex_age.csv"), colClasses = c(SEX = "character", AGE_GROUP = "character"))
rg_tot <- read.csv(file.path(census, "residents_region.csv"), colClasses = c(REGION = "character"))
em <- d$MIGRATION_TYPE == "EMIGRANT"
d$SA <- factor(ifelse(em, "ABROAD", paste(d$SEX, d$AGE_GROUP, sep = ":")))
d$RG <- factor(ifelse(em, "ABROAD", d$REGION))
w_abroad <- sum(d$weight[em])
tot_sa <- c(ABROAD = w_abroad, setNames(sa_tot$total, paste(sa_tot$SEX, sa_tot$AGE_GROUP, sep = ":")))
tot_rg <- c(ABROAD = w_abroad, setNames(rg_tot$total, rg_tot$REGION))
pop <- c(`(Intercept)` = sum(tot_sa),
  setNames(tot_sa[levels(d$SA)[-1]], paste0("SA", levels(d$SA)[-1])),
  setNames(tot_rg[levels(d$RG)[-1]], paste0("RG", levels(d$RG)[-1])))
full <- calibrate(svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE),
  ~SA + RG, pop, calfun = "raking")
# The default tables estimate the usual residents: the survey's domain without the current
# emigrants abroad (subset keeps the whole design, as migstat's `filter` does).
des <- subset(full, MIGRATION_TYPE != "EMIGRANT")
# Every margin combination of `dims`, as migstat publishes it (`_T` for a margin).
cube <- function(variable, dims, fun) {
  out <- list()
  for (k in 0:(2^length(dims) - 1)) {
    totalled <- bitwAnd(k, 2^(0:(length(dims) - 1))) != 0
    keep <- dims[!totalled]
    f <- as.formula(paste("~", variable))
    if (length(keep) == 0) {
      t <- fun(f, des)
      ci <- confint(t, df = degf(des))
      r <- data.frame(estimate = unname(coef(t)), se = unname(SE(t)), ci_low_t = ci[, 1], ci_high_t = ci[, 2])
    } else {
      b <- svyby(f, as.formula(paste("~", paste(keep, collapse = "+"))), des, fun)
      ci <- confint(b, df = degf(des))
      r <- data.frame(b[keep], estimate = b[[variable]], se = unname(SE(b)), ci_low_t = ci[, 1], ci_high_t = ci[, 2])
    }
    for (dd in dims[totalled]) r[[dd]] <- "_T"
    out[[length(out) + 1]] <- r[c(dims, "estimate", "se", "ci_low_t", "ci_high_t")]
  }
  res <- do.call(rbind, out)
  res$estimate <- sprintf("%.17g", res$estimate)
  res$se <- sprintf("%.17g", res$se)
  res$ci_low_t <- sprintf("%.17g", res$ci_low_t)
  res$ci_high_t <- sprintf("%.17g", res$ci_high_t)
  res$df <- degf(des)
  res
}
# Shares of each category within the cells of `dims` (svymean of an indicator: the same
# linearization as svymean of the factor); a category absent from a cell is a share of 0. Their
# intervals by svyciprop's logit method, t (the design's df) and normal.
logit_ci <- function(dims) {
  out <- list()
  for (k in 0:(2^length(dims) - 1)) {
    totalled <- bitwAnd(k, 2^(0:(length(dims) - 1))) != 0
    keep <- dims[!totalled]
    ci <- function(df) {
      if (length(keep) == 0) {
        p <- svyciprop(~ind, des, method = "logit", df = df)
        data.frame(l = attr(p, "ci")[1], u = attr(p, "ci")[2])
      } else {
        b <- svyby(~ind, as.formula(paste("~", paste(keep, collapse = "+"))), des, svyciprop,
          method = "logit", df = df, vartype = "ci")
        data.frame(b[keep], l = b$ci_l, u = b$ci_u)
      }
    }
    r <- ci(degf(des))
    z <- ci(Inf)
    r$ci_low_t <- sprintf("%.17g", r$l)
    r$ci_high_t <- sprintf("%.17g", r$u)
    r$ci_low <- sprintf("%.17g", z$l)
    r$ci_high <- sprintf("%.17g", z$u)
    for (dd in dims[totalled]) r[[dd]] <- "_T"
    out[[length(out) + 1]] <- r[c(dims, "ci_low_t", "ci_high_t", "ci_low", "ci_high")]
  }
  do.call(rbind, out)
}
share <- function(category, dims) {
  out <- list()
  for (level in sort(unique(d[[category]]))) {
    des <<- update(des, ind = as.numeric(get(category) == level))
    r <- cube("ind", dims, svymean)
    l <- suppressWarnings(logit_ci(dims))
    r <- merge(r[setdiff(names(r), c("ci_low_t", "ci_high_t"))], l, by = dims, sort = FALSE)
    if (all(as.numeric(r$estimate) == 0)) next  # a category outside the table's universe
    r[[category]] <- level
    out[[length(out) + 1]] <- r
  }
  res <- do.call(rbind, out)
  res[c(category, dims, "estimate", "se", "ci_low_t", "ci_high_t", "df", "ci_low", "ci_high")]
}
write.csv(cube("one", c("SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION"), svytotal), args[2], row.names = FALSE, quote = FALSE)
write.csv(cube("AGE", c("SEX", "MIGRATION_TYPE", "REGION"), svymean), args[3], row.names = FALSE, quote = FALSE)
write.csv(share("MIGRATION_TYPE", c("SEX", "REGION")), args[4], row.names = FALSE, quote = FALSE)
# Quantiles of `variable` (svyquantile through svyby: each cell a subset of the design with its
# own degrees of freedom), t and normal Woodruff intervals.
quantile_cube <- function(variable, dims, p) {
  out <- list()
  f <- as.formula(paste("~", variable))
  for (k in 0:(2^length(dims) - 1)) {
    totalled <- bitwAnd(k, 2^(0:(length(dims) - 1))) != 0
    keep <- dims[!totalled]
    est <- function(df) {
      if (length(keep) == 0) {
        q <- svyquantile(f, des, quantiles = p, ci = TRUE, na.rm = TRUE, df = df)[[1]]
        data.frame(estimate = q[1, 1], se = q[1, 4], ci_l = q[1, 2], ci_u = q[1, 3])
      } else {
        b <- svyby(f, as.formula(paste("~", paste(keep, collapse = "+"))), des, svyquantile, quantiles = p,
          ci = TRUE, na.rm = TRUE, df = df, vartype = c("se", "ci"))
        data.frame(b[keep], estimate = b[[variable]], se = b[[paste0("se.", variable)]], ci_l = b$ci_l, ci_u = b$ci_u)
      }
    }
    r <- est(NULL)
    z <- est(Inf)
    r$ci_low_t <- r$ci_l
    r$ci_high_t <- r$ci_u
    r$ci_low <- z$ci_l
    r$ci_high <- z$ci_u
    r$df <- sapply(seq_len(nrow(r)), function(i) {
      inside <- !is.na(des$variables[[variable]])
      for (dd in keep) inside <- inside & des$variables[[dd]] == r[[dd]][i]
      degf(des[inside, ])
    })
    for (dd in dims[totalled]) r[[dd]] <- "_T"
    out[[length(out) + 1]] <- r[c(dims, "estimate", "se", "ci_low_t", "ci_high_t", "ci_low", "ci_high", "df")]
  }
  res <- do.call(rbind, out)
  for (c in c("estimate", "se", "ci_low_t", "ci_high_t", "ci_low", "ci_high")) res[[c]] <- sprintf("%.17g", res[[c]])
  res
}
write.csv(quantile_cube("AGE", c("SEX", "MIGRATION_TYPE", "REGION"), 0.5), args[6], row.names = FALSE, quote = FALSE)
# The emigrants abroad, their own table.
des <- subset(full, MIGRATION_TYPE == "EMIGRANT")
write.csv(cube("one", c("SEX", "AGE_GROUP", "REGION"), svytotal), args[5], row.names = FALSE, quote = FALSE)
cat("R", R.version.string, "survey", as.character(packageVersion("survey")), "\n")
