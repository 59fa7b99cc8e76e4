/*
 * audio.c: audio decoding (libsndfile), mixdown to mono, resampling (libsamplerate).
 *
 * Key decision: nothing is sized from the header. The header is checked against hard limits
 * (channels, rate, duration) and then samples are decoded in fixed chunks into a buffer that
 * grows with what was actually decoded (and never past max_frames), so a WAV whose header lies
 * about its length costs nothing. In-memory images go through sf_open_virtual with callbacks
 * that clamp every read and seek to the buffer, so we never read outside it ourselves.
 */
#include "media/audio.h"

#include "core/core.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_FRAMES 4096

/* ==== decoding ================================================================================ */

static enum cge_status open_error(const char *label, int err) {
    switch (err) {
    case SF_ERR_UNRECOGNISED_FORMAT:
        return cge__err(CGE_ERR_UNSUPPORTED,
                        "%s: not an audio format libsndfile recognises (WAV, FLAC, OGG...)", label);
    case SF_ERR_SYSTEM:
        return cge__err(CGE_ERR_IO, "%s: %s", label, sf_error_number(err));
    case SF_ERR_UNSUPPORTED_ENCODING:
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: unsupported audio encoding", label);
    default:
        return cge__err(CGE_ERR_SERIALIZATION, "%s: malformed audio file: %s", label,
                        sf_error_number(err));
    }
}

/* The containers we hand to libsndfile, by their first four bytes: WAV (RIFF, RIFX, RF64,
 * BW64), Sony Wave64 ("riff" GUID), AIFF/AIFC ("FORM"), FLAC, Ogg (Vorbis, Opus, FLAC), AU and
 * CAF. Everything else is refused before libsndfile sees it: its last-resort MPEG probe runs
 * libmpg123, which prints to stderr on junk (a library must not), and the rarely used formats
 * are attack surface we do not need. */
static enum cge_status sniff(const unsigned char *head, size_t n, const char *label) {
    static const char magic[][5] = {"RIFF", "RIFX", "RF64", "BW64", "riff",
                                    "FORM", "fLaC", "OggS", ".snd", "caff"};
    if (n < 12)
        return cge__err(CGE_ERR_SERIALIZATION, "%s: %zu bytes, too short for an audio file", label,
                        n);
    for (size_t i = 0; i < sizeof magic / sizeof *magic; i++)
        if (memcmp(head, magic[i], 4) == 0) return CGE_OK;
    return cge__err(CGE_ERR_UNSUPPORTED,
                    "%s: unsupported audio format (cge reads WAV, FLAC, OGG, AIFF, AU, CAF)",
                    label);
}

/* Some taggers put an ID3v2 block in front of FLAC or WAV data; libsndfile skips it. Returns the
 * offset of what follows the tag (10-byte header + syncsafe size), or 0 when there is no tag.
 * head holds at least 10 bytes. */
static uint64_t id3_skip(const unsigned char *head) {
    if (memcmp(head, "ID3", 3) != 0) return 0;
    if ((head[6] | head[7] | head[8] | head[9]) & 0x80) return 0; /* not syncsafe: not ID3 */
    uint64_t size = (uint64_t)head[6] << 21 | (uint64_t)head[7] << 14 | (uint64_t)head[8] << 7 |
                    (uint64_t)head[9];
    return 10 + size;
}

static enum cge_status sniff_memory(const unsigned char *data, size_t len, const char *label) {
    if (len >= 12) {
        uint64_t off = id3_skip(data);
        if (off > 0 && off < len) return sniff(data + off, len - (size_t)off, label);
    }
    return sniff(data, len, label);
}

/* libsndfile quietly shortens a WAV whose data chunk announces more bytes than the file holds
 * (it logs "data : N (should be M)"). That is a truncated download or a lying header: refuse
 * it, rather than embed a fragment. The streaming placeholders (0 and 0xFFFFFFFF, written by
 * recorders that never finalize the header) are accepted. Returns CGE_OK or the error. */
static enum cge_status check_truncated(SNDFILE *sf, const char *label) {
    enum { LOG_CAP = 16384 };
    char *log = cge__malloc(LOG_CAP);
    if (!log) return cge__err(CGE_ERR_NOMEM, "%s: header log", label);
    log[0] = '\0';
    sf_command(sf, SFC_GET_LOG_INFO, log, LOG_CAP);
    log[LOG_CAP - 1] = '\0';
    enum cge_status st = CGE_OK;
    for (const char *p = log; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        unsigned long long declared = 0, real = 0;
        if (strncmp(p, "data : ", 7) != 0) continue;
        if (sscanf(p, "data : %llu (should be %llu)", &declared, &real) == 2 && declared != 0 &&
            declared != 0xffffffffull && declared > real) {
            st = cge__err(CGE_ERR_SERIALIZATION,
                          "%s: truncated or lying header: the data chunk announces %llu bytes, "
                          "the file holds %llu",
                          label, declared, real);
            break;
        }
    }
    cge__free(log);
    return st;
}

/* Header checks, then chunked decoding with mixdown. Does not close sf. */
static enum cge_status decode(SNDFILE *sf, const SF_INFO *si, const char *label, int64_t max_frames,
                              float **out, int64_t *n_out, struct cge_audio_info *info) {
    if (info) {
        info->sample_rate = si->samplerate;
        info->channels = si->channels;
        info->frames = si->frames == SF_COUNT_MAX ? -1 : (int64_t)si->frames;
        info->format = si->format;
    }
    if (si->channels < 1 || si->channels > CGE_AUDIO_MAX_CHANNELS)
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: %d channels (supported: 1..%d)", label,
                        si->channels, CGE_AUDIO_MAX_CHANNELS);
    if (si->samplerate < CGE_AUDIO_MIN_RATE || si->samplerate > CGE_AUDIO_MAX_RATE)
        return cge__err(CGE_ERR_UNSUPPORTED, "%s: sample rate %d Hz (supported: %d..%d)", label,
                        si->samplerate, CGE_AUDIO_MIN_RATE, CGE_AUDIO_MAX_RATE);
    enum cge_status tst = check_truncated(sf, label);
    if (tst != CGE_OK) return tst;
    int known = si->frames != SF_COUNT_MAX;
    if (known && si->frames <= 0)
        return cge__err(CGE_ERR_EMPTY_INPUT, "%s: the recording holds no samples", label);
    int64_t limit = (int64_t)CGE_AUDIO_MAX_SECONDS * si->samplerate;
    if (known && si->frames > limit)
        return cge__err(CGE_ERR_INPUT_TOO_LONG, "%s: %lld frames at %d Hz (%.0f s), limit %d s",
                        label, (long long)si->frames, si->samplerate,
                        (double)si->frames / si->samplerate, CGE_AUDIO_MAX_SECONDS);
    int64_t want = limit;
    if (known && si->frames < want) want = si->frames;
    if (max_frames > 0 && max_frames < want) want = max_frames;

    const int ch = si->channels;
    float *chunk = cge__malloc(sizeof(float) * CHUNK_FRAMES * (size_t)ch);
    if (!chunk) return cge__err(CGE_ERR_NOMEM, "%s: decode buffer", label);
    float *buf = NULL;
    int64_t n = 0, cap = 0;
    enum cge_status st = CGE_OK;
    while (n < want) {
        int64_t ask = want - n < CHUNK_FRAMES ? want - n : CHUNK_FRAMES;
        sf_count_t got = sf_readf_float(sf, chunk, (sf_count_t)ask);
        if (got <= 0) break;
        if (got > ask) got = ask; /* defensive: never trust a count past what we asked */
        if (n + got > cap) {
            int64_t ncap = cap ? cap * 2 : 16 * CHUNK_FRAMES;
            if (ncap > want) ncap = want;
            if (ncap < n + got) ncap = n + got;
            float *nb = cge__realloc(buf, sizeof(float) * (size_t)ncap);
            if (!nb) {
                st = cge__err(CGE_ERR_NOMEM, "%s: %lld samples", label, (long long)ncap);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        for (sf_count_t i = 0; i < got; i++) {
            const float *fr = chunk + (size_t)i * (size_t)ch;
            float v;
            if (ch == 1) {
                v = fr[0];
            } else {
                double s = 0;
                for (int c = 0; c < ch; c++)
                    s += fr[c];
                v = (float)(s / ch);
            }
            if (!isfinite(v)) {
                st = cge__err(CGE_ERR_INVALID_VALUE, "%s: non-finite sample at frame %lld", label,
                              (long long)(n + i));
                break;
            }
            buf[n + i] = v;
        }
        if (st != CGE_OK) break;
        n += got;
    }
    cge__free(chunk);
    if (st == CGE_OK && sf_error(sf) != SF_ERR_NO_ERROR)
        st = cge__err(CGE_ERR_SERIALIZATION, "%s: decoding failed after %lld frames: %s", label,
                      (long long)n, sf_strerror(sf));
    if (st == CGE_OK && n == 0)
        st = cge__err(CGE_ERR_EMPTY_INPUT, "%s: no samples could be decoded", label);
    if (st == CGE_OK && known && n < want)
        st = cge__err(CGE_ERR_SERIALIZATION,
                      "%s: truncated: the header announces %lld frames, only %lld decode", label,
                      (long long)want, (long long)n);
    if (st != CGE_OK) {
        cge__free(buf);
        return st;
    }
    *out = buf;
    *n_out = n;
    return CGE_OK;
}

static enum cge_status sniff_file(const char *path) {
    unsigned char head[12];
    FILE *f = fopen(path, "rb");
    if (!f) return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(errno));
    size_t n = fread(head, 1, sizeof head, f);
    if (n == sizeof head) {
        uint64_t off = id3_skip(head);
        if (off > 0 && fseeko(f, (off_t)off, SEEK_SET) == 0) n = fread(head, 1, sizeof head, f);
    }
    fclose(f);
    if (n == 0) return cge__err(CGE_ERR_EMPTY_INPUT, "%s: empty file", path);
    return sniff(head, n, path);
}

enum cge_status cge_audio_decode_file(const char *path, int64_t max_frames, float **out,
                                      int64_t *n_out, struct cge_audio_info *info) {
    *out = NULL;
    *n_out = 0;
    struct stat stt;
    if (stat(path, &stt) != 0) return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(stt.st_mode)) return cge__err(CGE_ERR_IO, "%s: not a regular file", path);
    enum cge_status st = sniff_file(path);
    if (st != CGE_OK) return st;
    SF_INFO si;
    memset(&si, 0, sizeof si);
    SNDFILE *sf = sf_open(path, SFM_READ, &si);
    if (!sf) return open_error(path, sf_error(NULL));
    st = decode(sf, &si, path, max_frames, out, n_out, info);
    sf_close(sf);
    return st;
}

/* ---- in-memory images through sf_open_virtual ---- */
struct membuf {
    const unsigned char *p;
    sf_count_t len, pos;
};

static sf_count_t vio_len(void *u) {
    return ((struct membuf *)u)->len;
}

static sf_count_t vio_seek(sf_count_t off, int whence, void *u) {
    struct membuf *m = u;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->len;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return -1;
    /* overflow-safe: base is within [0, len], off is anything */
    if (off < -base || off > m->len - base) return -1;
    m->pos = base + off;
    return m->pos;
}

static sf_count_t vio_read(void *dst, sf_count_t n, void *u) {
    struct membuf *m = u;
    if (n <= 0 || m->pos >= m->len) return 0;
    if (n > m->len - m->pos) n = m->len - m->pos;
    memcpy(dst, m->p + m->pos, (size_t)n);
    m->pos += n;
    return n;
}

static sf_count_t vio_write(const void *src, sf_count_t n, void *u) {
    (void)src;
    (void)n;
    (void)u;
    return 0;
}

static sf_count_t vio_tell(void *u) {
    return ((struct membuf *)u)->pos;
}

enum cge_status cge_audio_decode_memory(const void *data, size_t len, const char *label,
                                        int64_t max_frames, float **out, int64_t *n_out,
                                        struct cge_audio_info *info) {
    *out = NULL;
    *n_out = 0;
    if (!label) label = "<memory>";
    if (!data || len == 0) return cge__err(CGE_ERR_EMPTY_INPUT, "%s: empty file", label);
    enum cge_status sst = sniff_memory(data, len, label);
    if (sst != CGE_OK) return sst;
    struct membuf m = {data, (sf_count_t)len, 0};
    SF_VIRTUAL_IO vio = {vio_len, vio_seek, vio_read, vio_write, vio_tell};
    SF_INFO si;
    memset(&si, 0, sizeof si);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &si, &m);
    if (!sf) return open_error(label, sf_error(NULL));
    enum cge_status st = decode(sf, &si, label, max_frames, out, n_out, info);
    sf_close(sf);
    return st;
}

/* ==== resampling ==============================================================================
 * SRC_SINC_BEST_QUALITY costs ~0.7 s of CPU per 30 s at 48 kHz, so long signals are cut into
 * pieces resampled on separate threads. A piece starts on an input sample that maps to a whole
 * output sample (a multiple of rate_in / gcd), so its outputs sit on the same grid as the
 * whole signal's; each piece also reads `margin` input samples beyond its own range on both
 * sides (more than the sinc filter's reach, which widens by rate_in / rate_out when
 * downsampling) and keeps only the outputs of its own range. The result equals the one-call
 * resampling to float rounding (the test checks 1e-6). */

struct rs_piece {
    const float *in; /* the piece's input window */
    int64_t n_in;
    double ratio;
    float *out;         /* (cap) */
    int64_t cap, n_gen; /* outputs generated */
    int err;            /* libsamplerate error */
};

static void *rs_run(void *p) {
    struct rs_piece *r = p;
    SRC_DATA d;
    memset(&d, 0, sizeof d);
    d.data_in = r->in;
    d.input_frames = (long)r->n_in;
    d.data_out = r->out;
    d.output_frames = (long)r->cap;
    d.src_ratio = r->ratio;
    d.end_of_input = 1;
    r->err = src_simple(&d, SRC_SINC_BEST_QUALITY, 1);
    r->n_gen = r->err ? 0 : d.output_frames_gen;
    return NULL;
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

enum cge_status cge__audio_resample_pieces(const float *in, int64_t n_in, int rate_in, int rate_out,
                                           int n_pieces, float **out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (n_in <= 0) return cge__err(CGE_ERR_EMPTY_INPUT, "resample: no samples");
    if (rate_in < CGE_AUDIO_MIN_RATE || rate_in > CGE_AUDIO_MAX_RATE ||
        rate_out < CGE_AUDIO_MIN_RATE || rate_out > CGE_AUDIO_MAX_RATE)
        return cge__err(CGE_ERR_INVALID_VALUE, "resample: rates %d -> %d Hz out of range", rate_in,
                        rate_out);
    if (rate_in == rate_out) {
        float *o = cge__malloc(sizeof(float) * (size_t)n_in);
        if (!o) return cge__err(CGE_ERR_NOMEM, "resample: %lld samples", (long long)n_in);
        memcpy(o, in, sizeof(float) * (size_t)n_in);
        *out = o;
        *n_out = n_in;
        return CGE_OK;
    }
    const double ratio = (double)rate_out / rate_in;
    const int64_t g = gcd64(rate_in, rate_out);
    const int64_t step_in = rate_in / g, step_out = rate_out / g;
    /* the filter reaches ~143 zero crossings each side; in input samples that is 143 when
     * upsampling and 143 · rate_in / rate_out when downsampling: take 256 (·ratio⁻¹) */
    int64_t margin = ratio < 1.0 ? (int64_t)ceil(256.0 / ratio) : 256;
    margin = (margin + step_in - 1) / step_in * step_in;
    int64_t blocks = n_in / step_in; /* whole aligned blocks */
    int64_t min_blocks = (4 * margin) / step_in + 1;
    if (n_pieces > 16) n_pieces = 16;
    if (n_pieces < 1 || blocks / n_pieces < min_blocks) n_pieces = 1;

    struct rs_piece pc[16];
    int64_t core0[16], core1[16], off[16]; /* core input range, window start */
    memset(pc, 0, sizeof pc);
    enum cge_status st = CGE_OK;
    for (int k = 0; k < n_pieces; k++) {
        core0[k] = blocks * k / n_pieces * step_in;
        core1[k] = k == n_pieces - 1 ? n_in : blocks * (k + 1) / n_pieces * step_in;
        off[k] = core0[k] - margin < 0 ? 0 : core0[k] - margin;
        int64_t e = k == n_pieces - 1 || core1[k] + margin > n_in ? n_in : core1[k] + margin;
        pc[k].in = in + off[k];
        pc[k].n_in = e - off[k];
        pc[k].ratio = ratio;
        pc[k].cap = (int64_t)ceil((double)pc[k].n_in * ratio) + 64;
        pc[k].out = cge__malloc(sizeof(float) * (size_t)pc[k].cap);
        if (!pc[k].out)
            st = cge__err(CGE_ERR_NOMEM, "resample: %lld samples", (long long)pc[k].cap);
    }
    if (st == CGE_OK) {
        pthread_t th[16];
        int started[16] = {0};
        for (int k = 1; k < n_pieces; k++)
            started[k] = pthread_create(&th[k], NULL, rs_run, &pc[k]) == 0;
        rs_run(&pc[0]);
        for (int k = 1; k < n_pieces; k++) {
            if (started[k])
                pthread_join(th[k], NULL);
            else
                rs_run(&pc[k]); /* no thread: do it here */
        }
        for (int k = 0; k < n_pieces && st == CGE_OK; k++)
            if (pc[k].err) /* 1 is SRC_ERR_MALLOC_FAILED, which the public header does not name */
                st = cge__err(pc[k].err == 1 ? CGE_ERR_NOMEM : CGE_ERR_INVALID_VALUE,
                              "resample %d -> %d Hz: %s", rate_in, rate_out,
                              src_strerror(pc[k].err));
    }
    /* output index of input sample x (a multiple of step_in): x / step_in · step_out */
    int64_t total = 0;
    if (st == CGE_OK) {
        int last = n_pieces - 1;
        total = off[last] / step_in * step_out + pc[last].n_gen;
        if (total <= 0)
            st = cge__err(CGE_ERR_EMPTY_INPUT, "resample %d -> %d Hz: %lld samples gave none",
                          rate_in, rate_out, (long long)n_in);
    }
    float *o = NULL;
    if (st == CGE_OK) {
        o = cge__malloc(sizeof(float) * (size_t)total);
        if (!o) st = cge__err(CGE_ERR_NOMEM, "resample: %lld samples", (long long)total);
    }
    for (int k = 0; st == CGE_OK && k < n_pieces; k++) {
        int64_t w0 = off[k] / step_in * step_out; /* output index of the window's start */
        int64_t c0 = core0[k] / step_in * step_out;
        int64_t c1 = k == n_pieces - 1 ? total : core1[k] / step_in * step_out;
        for (int64_t j = c0; j < c1; j++) {
            int64_t local = j - w0;
            o[j] = local >= 0 && local < pc[k].n_gen ? pc[k].out[local] : 0.0f;
        }
    }
    for (int k = 0; k < n_pieces; k++)
        cge__free(pc[k].out);
    if (st != CGE_OK) {
        cge__free(o);
        return st;
    }
    *out = o;
    *n_out = total;
    return CGE_OK;
}

enum cge_status cge_audio_resample(const float *in, int64_t n_in, int rate_in, int rate_out,
                                   float **out, int64_t *n_out) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int pieces = ncpu < 1 ? 1 : ncpu > 4 ? 4 : (int)ncpu;
    return cge__audio_resample_pieces(in, n_in, rate_in, rate_out, pieces, out, n_out);
}

enum cge_status cge_audio_load(const char *path, int rate, double max_seconds, float **out,
                               int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    struct cge_audio_info info;
    memset(&info, 0, sizeof info);
    /* The header's rate is only known after opening; decode a bound that holds for any rate,
     * then trim below once the rate is known. */
    int64_t max_frames = 0;
    float *x = NULL;
    int64_t n = 0;
    if (max_seconds > 0) {
        /* open once to learn the rate cheaply: sf_open only parses the header */
        SF_INFO si;
        memset(&si, 0, sizeof si);
        struct stat stt;
        if (stat(path, &stt) != 0) return cge__err(CGE_ERR_IO, "%s: %s", path, strerror(errno));
        if (!S_ISREG(stt.st_mode)) return cge__err(CGE_ERR_IO, "%s: not a regular file", path);
        enum cge_status sst = sniff_file(path);
        if (sst != CGE_OK) return sst;
        SNDFILE *sf = sf_open(path, SFM_READ, &si);
        if (!sf) return open_error(path, sf_error(NULL));
        double secs = max_seconds + (si.samplerate == rate ? 0.0 : 1.0);
        if (si.samplerate > 0 && si.samplerate <= CGE_AUDIO_MAX_RATE)
            max_frames = (int64_t)ceil(secs * si.samplerate);
        enum cge_status st = decode(sf, &si, path, max_frames, &x, &n, &info);
        sf_close(sf);
        if (st != CGE_OK) return st;
    } else {
        enum cge_status st = cge_audio_decode_file(path, 0, &x, &n, &info);
        if (st != CGE_OK) return st;
    }
    if (info.sample_rate == rate) {
        *out = x;
        *n_out = n;
        return CGE_OK;
    }
    enum cge_status st = cge_audio_resample(x, n, info.sample_rate, rate, out, n_out);
    cge__free(x);
    if (st != CGE_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", cge_errmsg()); /* errmsg is the buffer cge__err writes */
        cge__err(st, "%s: %s", path, msg);
    }
    return st;
}

enum cge_status cge_audio_load_memory(const void *data, size_t len, const char *label, int rate,
                                      double max_seconds, float **out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    struct cge_audio_info info;
    memset(&info, 0, sizeof info);
    float *x = NULL;
    int64_t n = 0;
    enum cge_status st = cge_audio_decode_memory(data, len, label, 0, &x, &n, &info);
    if (st != CGE_OK) return st;
    /* Keep what the window needs plus one second of context for the resampling filter, as
     * cge_audio_load does for files. */
    if (max_seconds > 0) {
        double secs = max_seconds + (info.sample_rate == rate ? 0.0 : 1.0);
        int64_t keep = (int64_t)ceil(secs * info.sample_rate);
        if (keep > 0 && n > keep) n = keep;
    }
    if (info.sample_rate == rate) {
        *out = x;
        *n_out = n;
        return CGE_OK;
    }
    st = cge_audio_resample(x, n, info.sample_rate, rate, out, n_out);
    cge__free(x);
    if (st != CGE_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", cge_errmsg());
        cge__err(st, "%s: %s", label, msg);
    }
    return st;
}
