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
full <- svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE)
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
# linearization as svymean of the factor); a category absent from a cell is a share of 0.
share <- function(category, dims) {
  out <- list()
  for (level in sort(unique(d[[category]]))) {
    des <<- update(des, ind = as.numeric(get(category) == level))
    r <- cube("ind", dims, svymean)
    if (all(as.numeric(r$estimate) == 0)) next  # a category outside the table's universe
    r[[category]] <- level
    out[[length(out) + 1]] <- r
  }
  res <- do.call(rbind, out)
  res[c(category, dims, "estimate", "se", "ci_low_t", "ci_high_t", "df")]
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
