/*
 * unit_tier: a tier built by hand for the unit tests, derived as tiers.c derives a
 * loaded one (refill seconds, TTL, the script's arguments), without limits.json's
 * bounds: refills beyond 10^12 s are clamped there so the clamp tests can go that far.
 */
#ifndef SG_UNIT_TIER_H
#define SG_UNIT_TIER_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tiers.h"

static inline struct tier unit_tier(const char *name, long capacity, double rate)
{
    struct tier t;

    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.capacity = capacity;
    t.rate = rate;
    double refill = ceil((double)capacity / rate);
    t.refill_seconds = refill < 1e12 ? (long)refill : 1000000000000L;
    t.ttl = t.refill_seconds + 1;
    tiers_tier_args(&t);
    return t;
}

#endif
