/*
 * metricstext: the metrics segment (include/metricsshm.h) as a page of the Prometheus
 * text format (version 0.0.4). Reads only atomics: safe from any thread while other
 * processes count.
 */
#ifndef SG_METRICSTEXT_H
#define SG_METRICSTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "metricsshm.h"

/*
 * The page for segment s (borrowed): a new buffer (free() it) of *len bytes, at most
 * METRICS_PAGE_MAX; NULL when s is NULL or the page does not fit or memory runs out.
 */
char *metricstext_render(const struct metrics_shared *s, size_t *len);

/*
 * Writes s as a Prometheus label value (backslash, double quote and newline escaped,
 * as the text format wants) into out. Returns false, with out "", when it does not fit
 * in outlen bytes. Pure.
 */
bool metricstext_escape_label(const char *s, char *out, size_t outlen);

#endif
