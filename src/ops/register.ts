// Loads every op front-end of src/ops/, so that their backward rules are in the tape's table and
// their methods are on Tensor. Each public entry point (src/index.ts and the subpath indexes)
// imports this file; package.json "sideEffects" names the op modules so that bundlers keep them
// (test/suite/structure.ts bundles the entry with esbuild to check). (The sparse ops register from their own modules, which every user of them imports.)
import "./elementwise.ts";
import "./reduce.ts";
import "./layout.ts";
import "./matmul.ts";
import "./softmax.ts";
import "./layernorm.ts";
import "./embedding.ts";
import "./crossentropy.ts";
import "./dropout.ts";
import "./attention.ts";
