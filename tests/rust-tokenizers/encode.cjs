// encode.cjs: encodes texts with Hugging Face's Rust tokenizers (the npm binding, 0.23.2) for
// test_text_rust, which compares cge's ids with these.
// Usage: node tests/rust-tokenizers/encode.cjs TOKENIZER_JSON IN_JSONL OUT_TXT
// Each input line is a JSON array [text, add_special (0/1), max_len (0: no truncation)]; each
// output line holds the ids of that text separated by spaces, or "!" and the error message.
// The file's own "padding" and "truncation" sections are switched off, as cge ignores them (its
// callers pass max_len); max_len > 0 sets the library's truncation (longest first, right side),
// which keeps the special tokens and cuts the content, as cge_tokenizer_encode's max_len does.
// Texts are grouped by (add_special, max_len) and each group goes through encodeBatch.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules', 'tokenizers'));

async function main() {
    const [tokPath, inPath, outPath] = process.argv.slice(2);
    const tok = Tokenizer.fromFile(tokPath);
    tok.disablePadding();
    tok.disableTruncation();
    const items = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
    const out = new Array(items.length);
    const groups = new Map();
    items.forEach(([text, special, maxLen], i) => {
        const key = `${special ? 1 : 0}:${maxLen | 0}`;
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(i);
    });
    for (const [key, idx] of groups) {
        const [special, maxLen] = key.split(':').map(Number);
        if (maxLen > 0) tok.setTruncation(maxLen);
        else tok.disableTruncation();
        try {
            const encs = await tok.encodeBatch(idx.map((i) => items[i][0]), { addSpecialTokens: special === 1 });
            encs.forEach((e, k) => { out[idx[k]] = Array.from(e.getIds()).join(' '); });
        } catch (err) {
            // One bad text fails the batch: redo the group one by one to find which.
            for (const i of idx) {
                try {
                    const e = await tok.encode(items[i][0], null, { addSpecialTokens: special === 1 });
                    out[i] = Array.from(e.getIds()).join(' ');
                } catch (err1) {
                    out[i] = '!' + String(err1.message || err1).replace(/\n/g, ' ');
                }
            }
        }
    }
    fs.writeFileSync(outPath, out.join('\n') + '\n');
}

main().catch((err) => {
    console.error(`encode.cjs: ${err.message || err}`);
    process.exit(1);
});
