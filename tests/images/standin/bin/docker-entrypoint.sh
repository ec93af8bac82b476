#!/bin/sh
# Upstream kong entrypoint overrides end with `/docker-entrypoint.sh kong docker-start` (Kong 2) or
# `/entrypoint.sh kong docker-start` (Kong 3); both lead here.
STANDIN_SERVICE="${STANDIN_SERVICE:-kong}" exec /usr/local/bin/standin
