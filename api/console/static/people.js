"use strict";
C.start(async () => null);
