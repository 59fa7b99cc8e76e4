// bench_text_tokenize.cjs: the @huggingface/tokenizers (JavaScript) peer of bench_text_tokenize.c.
// Usage: node bench/bench_text_tokenize.cjs TOKENIZER_JSON TEXTS_JSONL PASSES
// Encodes every line (one JSON string each) PASSES times with add_special_tokens=true and prints
// one line: "<tokens> <seconds> <checksum>" (tokens summed over all passes; the checksum is the sum
// of ids of one pass, so the C bench can check both libraries gave the same ids).
// Installed with `npm install` in bench/ (node_modules is not in git); nothing is downloaded here.
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules', '@huggingface', 'tokenizers'));

const [tokPath, textsPath, passesArg] = process.argv.slice(2);
const json = JSON.parse(fs.readFileSync(tokPath, 'utf8'));
const cfgPath = path.join(path.dirname(tokPath), 'tokenizer_config.json');
const config = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, 'utf8')) : {};
const tok = new Tokenizer(json, config);
const texts = fs.readFileSync(textsPath, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
const passes = Math.max(1, parseInt(passesArg || '1', 10));

let tokens = 0, checksum = 0;
const t0 = process.hrtime.bigint();
for (let p = 0; p < passes; p++) {
    for (const t of texts) {
        const ids = tok.encode(t, { add_special_tokens: true }).ids;
        tokens += ids.length;
        if (p === 0) for (const id of ids) checksum = (checksum + id) % 1000000007;
    }
}
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(`${tokens} ${secs} ${checksum}`);
