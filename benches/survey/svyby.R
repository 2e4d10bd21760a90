# R's survey package on the benchmark survey: svyby(~one, …, svytotal) for every margin
# combination of the 5 dimensions (the full cube migstat publishes), timed; with two margin
# files, the design is first raked to them (calibrate(…, calfun = "raking")).
#   Rscript benches/survey/svyby.R bench_data/survey/survey.csv bench_data/survey/r_cells.csv
#   Rscript benches/survey/svyby.R survey.csv r_cells.csv margin_sex_age.csv margin_region.csv
suppressPackageStartupMessages(library(survey))
args <- commandArgs(trailingOnly = TRUE)
t0 <- Sys.time()
d <- read.csv(args[1], colClasses = c(region = "character", migration_type = "character", edu = "character"))
# The same harmonization as benches/survey/pipeline.toml.
d$one <- 1
d$SEX <- d$sex
d$AGE_GROUP <- cut(d$age, c(-1, 14, 24, 64, Inf), labels = c("Y_LT15", "Y15T24", "Y25T64", "Y_GE65"))
d$MIGRATION_TYPE <- c("EMIGRANT", "RETURNEE", "IMMIGRANT", "NON_MIGRANT")[as.integer(d$migration_type)]
d$REGION <- paste0("MA-", d$region)
d$EDU <- paste0("E", d$edu)
des <- svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE)
if (length(args) >= 4) {
  sa <- read.csv(args[3], colClasses = "character")
  rg <- read.csv(args[4], colClasses = "character")
  d$SA <- factor(paste(d$SEX, d$AGE_GROUP, sep = ":"))
  d$RG <- factor(d$REGION)
  tot_sa <- setNames(as.numeric(sa$total), paste(sa$SEX, sa$AGE_GROUP, sep = ":"))
  tot_rg <- setNames(as.numeric(rg$total), rg$REGION)
  des <- svydesign(ids = ~psu, strata = ~stratum, weights = ~weight, data = d, nest = TRUE)
  pop <- c(`(Intercept)` = sum(tot_sa),
    setNames(tot_sa[levels(d$SA)[-1]], paste0("SA", levels(d$SA)[-1])),
    setNames(tot_rg[levels(d$RG)[-1]], paste0("RG", levels(d$RG)[-1])))
  des <- calibrate(des, ~SA + RG, pop, calfun = "raking")
}
t1 <- Sys.time()
dims <- c("SEX", "AGE_GROUP", "MIGRATION_TYPE", "REGION", "EDU")
out <- list()
for (k in 0:(2^length(dims) - 1)) {
  totalled <- bitwAnd(k, 2^(0:(length(dims) - 1))) != 0
  keep <- dims[!totalled]
  if (length(keep) == 0) {
    t <- svytotal(~one, des)
    r <- data.frame(row.names = 1, estimate = unname(coef(t)), se = unname(SE(t)))
  } else {
    b <- svyby(~one, as.formula(paste("~", paste(keep, collapse = "+"))), des, svytotal, covmat = FALSE)
    r <- data.frame(lapply(b[keep], as.character), estimate = b$one, se = unname(SE(b)))
  }
  for (dd in dims[totalled]) r[[dd]] <- "_T"
  out[[length(out) + 1]] <- r[c(dims, "estimate", "se")]
}
res <- do.call(rbind, out)
t2 <- Sys.time()
res$estimate <- sprintf("%.17g", res$estimate)
res$se <- sprintf("%.17g", res$se)
write.csv(res, args[2], row.names = FALSE, quote = FALSE)
cat(sprintf("R %s, survey %s: %d cells; read + design %.1f s, svyby cube %.1f s\n",
  getRversion(), packageVersion("survey"), nrow(res),
  as.numeric(t1 - t0, units = "secs"), as.numeric(t2 - t1, units = "secs")))
