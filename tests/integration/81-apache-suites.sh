#!/usr/bin/env bash
# 81-apache-suites: the host-independent suites again, with the stack under Apache 2.4 +
# mod_fcgid (SG_HOST=apache, tests/integration/apache.sh) instead of lighttpd:
# 10-health, 20-accounts, 22-login-abuse, 25-jwt, 30-ratelimit, 32-xff and 50-bad-input.
# Each runs in a bash of its own with its own folder (tests/out/NN-name.apache); its
# checks are reported here as "NN-name under Apache: ...", followed by four checks of
# this script: it reached its summary line, it ran Apache, Apache's log shows no crash,
# and no process of it is left. (60 and 61 are in 82-apache-stories; 35, 36, 62 and 63
# count lighttpd's two processes or their threads, 80-apache covers the Apache sizing
# instead.)
#
# Fails (does not skip) when apache2 or mod_fcgid is missing: the suites bail.
#
# Run alone from the repository root:  bash tests/integration/81-apache-suites.sh
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/apache.sh"

for suite in 10-health 20-accounts 22-login-abuse 25-jwt 30-ratelimit 32-xff 50-bad-input; do
    apache_run_suite "$suite"
done
