#!/usr/bin/env node
// Committed launcher so npm links the `ddpm` bin at install time, before `npm run build` has
// produced dist/ (npm skips bins whose target does not exist yet).
require('../dist/main.js');
