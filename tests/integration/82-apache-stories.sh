#!/usr/bin/env bash
# 82-apache-stories: the story suites again, with the stack under Apache 2.4 + mod_fcgid
# (SG_HOST=apache, tests/integration/apache.sh): 60-stories (every story route, offline)
# and 61-story-upstream (the fake MistralAI in each mode: upstream errors, timeouts (504
# from the gateway, before mod_fcgid's FcgidIOTimeout), the key never leaked). Reported
# as in 81-apache-suites.
#
# Fails (does not skip) when apache2 or mod_fcgid is missing: the suites bail.
#
# Run alone from the repository root:  bash tests/integration/82-apache-stories.sh
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/apache.sh"

for suite in 60-stories 61-story-upstream; do
    apache_run_suite "$suite"
done
