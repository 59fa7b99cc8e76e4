// unicode.cjs: what Hugging Face's Rust tokenizers does with each code point, for
// test_text_rust_unicode, which asks cge the same questions and compares the answers.
// Usage: node tests/rust-tokenizers/unicode.cjs TOKENIZER_JSON BYTE_LEVEL(0/1) OUT_TXT
// For every probed code point c (all of planes 0 and 1, the tags plane's first block, the last 256
// of plane 16, every 7th of planes 2 and 3 and every 61st elsewhere; never a surrogate) it
// records:
//   n: the tokenizer's normalizer applied to c alone;
//   p: its pre-tokenizer applied to "a" c "b";
//   q: for byte-level tokenizers (whose regexes tell numbers apart), to "1" c " ";
//   g: for a normalizer, to U+00A0 c (a Precompiled charsmap replaces a whole grapheme cluster,
//      so this tells whether c extends the cluster);
//   d, e: with a fourth argument "nfd", the library's NFD of "a" c U+0334 and of "a" U+0301 c,
//      which tell the canonical combining class of c apart from 0 (the marks reorder or not).
// An answer is written as the pieces' bytes in hex, c's own bytes written "{}", pieces joined by
// ","; byte-level pieces are mapped back from GPT-2's alphabet to the bytes they stand for.
// Consecutive probed code points with the same answer are one line: "KIND LO HI ANSWER" (hex
// code points; an empty answer is ".").
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules', 'tokenizers'));

function probed(c) {
    if (c >= 0xd800 && c <= 0xdfff) return false;
    if (c < 0x20000 || (c >= 0xe0000 && c < 0xe1000) || c >= 0x10ff00) return true;
    return c < 0x40000 ? c % 7 === 0 : c % 61 === 0;
}

// GPT-2's bytes_to_unicode, inverted: mapped code point -> byte.
const unbyte = new Map();
{
    let k = 0;
    for (let b = 0; b < 256; b++) {
        const keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        unbyte.set(keep ? b : 256 + k++, b);
    }
}

function hexAnswer(pieces, cBytes) {
    return pieces.map((buf) => {
        let s = '';
        for (let i = 0; i < buf.length;) {
            if (cBytes.length && i + cBytes.length <= buf.length && buf.subarray(i, i + cBytes.length).equals(cBytes)) {
                s += '{}';
                i += cBytes.length;
            } else {
                s += buf[i].toString(16).padStart(2, '0');
                i++;
            }
        }
        return s;
    }).join(',') || '.';
}

function main() {
    const [tokPath, byteLevelArg, outPath, nfdArg] = process.argv.slice(2);
    const nfd = nfdArg === 'nfd' ? require(path.join(__dirname, 'node_modules', 'tokenizers')).nfdNormalizer() : null;
    const byteLevel = byteLevelArg === '1';
    const tok = Tokenizer.fromFile(tokPath);
    const norm = tok.getNormalizer();
    const pre = tok.getPreTokenizer();
    const toBytes = (piece) => {
        if (!byteLevel) return Buffer.from(piece, 'utf8');
        return Buffer.from(Array.from(piece, (ch) => unbyte.get(ch.codePointAt(0))));
    };
    const out = [];
    const kinds = [['n', null], ['p', ['a', 'b']], ['q', ['1', ' ']], ['d', ['a', '\u0334']], ['e', ['a\u0301', '']], ['g', ['\u00a0', '']]];
    for (const [kind, tmpl] of kinds) {
        if ((kind === 'n' || kind === 'g') ? !norm : (kind === 'p' || kind === 'q') && !pre) continue;
        if (kind === 'q' && !byteLevel) continue;
        if ((kind === 'd' || kind === 'e') && !nfd) continue;
        let runLo = -1, runHi = -1, runAns = null;
        const flush = () => {
            if (runAns !== null) out.push(`${kind} ${runLo.toString(16)} ${runHi.toString(16)} ${runAns}`);
        };
        for (let c = 0; c <= 0x10ffff; c++) {
            if (!probed(c)) continue;
            const ch = String.fromCodePoint(c);
            const cBytes = Buffer.from(ch, 'utf8');
            let ans;
            if (kind === 'd' || kind === 'e') {
                ans = hexAnswer([Buffer.from(nfd.normalizeString(tmpl[0] + ch + tmpl[1]), 'utf8')], cBytes);
            } else if (kind === 'g') {
                ans = hexAnswer([Buffer.from(norm.normalizeString(tmpl[0] + ch), 'utf8')], cBytes);
            } else if (kind === 'n') {
                ans = hexAnswer([Buffer.from(norm.normalizeString(ch), 'utf8')], cBytes);
            } else {
                const pieces = pre.preTokenizeString(tmpl[0] + ch + tmpl[1]).map(([s]) => toBytes(s));
                ans = hexAnswer(pieces, cBytes);
            }
            if (ans === runAns) {
                runHi = c;
            } else {
                flush();
                runLo = runHi = c;
                runAns = ans;
            }
        }
        flush();
    }
    fs.writeFileSync(outPath, out.join('\n') + '\n');
}

main();
