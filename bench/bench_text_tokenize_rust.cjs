// bench_text_tokenize_rust.cjs: Hugging Face's Rust `tokenizers` (the npm binding 0.23.2 of
// tests/rust-tokenizers, the library transformers' fast tokenizers run) as a peer of
// bench_text_tokenize.c. Usage: node bench/bench_text_tokenize_rust.cjs TOKENIZER_JSON TEXTS_JSONL PASSES
// Encodes every line PASSES times through encodeBatch (the binding's fast path; one thread when
// RAYON_NUM_THREADS=1) with special tokens and prints "<tokens> <seconds> <checksum>" like the
// JavaScript peer. The file's own padding and truncation are switched off, as cge ignores them.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '..', 'tests', 'rust-tokenizers', 'node_modules', 'tokenizers'));

async function main() {
    const [tokPath, textsPath, passesArg] = process.argv.slice(2);
    const tok = Tokenizer.fromFile(tokPath);
    tok.disablePadding();
    tok.disableTruncation();
    const texts = fs.readFileSync(textsPath, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
    const passes = Math.max(1, parseInt(passesArg || '1', 10));
    let tokens = 0, checksum = 0;
    const t0 = process.hrtime.bigint();
    for (let p = 0; p < passes; p++) {
        const encs = await tok.encodeBatch(texts, { addSpecialTokens: true });
        for (const e of encs) {
            const ids = e.getIds();
            tokens += ids.length;
            if (p === 0) for (const id of ids) checksum = (checksum + id) % 1000000007;
        }
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`${tokens} ${secs} ${checksum}`);
}

main().catch((err) => {
    console.error(`bench_text_tokenize_rust.cjs: ${err.message || err}`);
    process.exit(1);
});
