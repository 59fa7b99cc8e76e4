/*
 * audio_mel.c: Whisper's log-mel spectrogram, as transformers' WhisperFeatureExtractor computes
 * it on its numpy path (audio_utils.spectrogram + _np_extract_fbank_features).
 *
 * Key decision: follow numpy's precision step by step rather than "close enough" float32. The
 * frames are windowed and transformed in float64 (FFTW3 double, n_fft = 400 is not a power of
 * two), the spectrum is rounded to complex64 as numpy stores it, the power and the mel product
 * are float64, log10 is float64 and only then is the result cast to float32; the final
 * max(x, max − 8) and (x + 4) / 4 run in float32 as numpy does. A float32 FFT would miss the
 * 1e-5 tolerance on quiet bins (log10 magnifies the relative error of small powers).
 * The mel product uses the filters' sparsity (each filter spans a handful of FFT bins).
 * FFTW's planner is not thread-safe: plans are made and destroyed under a global mutex; the
 * new-array execute function is thread-safe, so a shared cge_logmel serves concurrent calls.
 */
#include "media/audio.h"

#include "core/core.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

static pthread_mutex_t fftw_planner_lock = PTHREAD_MUTEX_INITIALIZER;

struct cge_logmel {
    int n_mels, sampling_rate, n_fft, hop, n_freq;
    int64_t n_samples; /* chunk_length · sampling_rate (480000) */
    int64_t n_stft;    /* STFT frames: 1 + n_samples / hop for the centered transform (3001) */
    int64_t n_frames;  /* n_stft − 1: the output frames (3000) */
    double *window;    /* (n_fft) periodic Hann */
    double *filters;   /* (n_freq, n_mels) Slaney mel filter bank */
    int *f_lo, *f_hi;  /* (n_mels) nonzero range [lo, hi) of each filter over the FFT bins */
    double *ft;        /* (n_mels, n_freq) filters transposed, for the sparse product */
    double log_floor;  /* log10(1e-10): the value of a frame of silence */
    fftw_plan plan;    /* r2c of n_fft, planned on 64-byte aligned arrays */
};

/* ---- the Slaney mel scale (transformers.audio_utils, mel_scale="slaney") ---- */
static double hz_to_mel(double f) {
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = 27.0 / log(6.4);
    double m = 3.0 * f / 200.0;
    if (f >= min_log_hz) m = min_log_mel + log(f / min_log_hz) * logstep;
    return m;
}

static double mel_to_hz(double m) {
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = log(6.4) / 27.0;
    double f = 200.0 * m / 3.0;
    if (m >= min_log_mel) f = min_log_hz * exp(logstep * (m - min_log_mel));
    return f;
}

/* numpy.linspace(a, b, n)[i] */
static double linspace(double a, double b, int n, int i) {
    if (n == 1) return a;
    if (i == n - 1) return b;
    double step = (b - a) / (n - 1);
    return (double)i * step + a;
}

/* mel_filter_bank(n_freq, n_mels, 0, sr/2, sr, norm="slaney", mel_scale="slaney") → (n_freq, n_mels) */
static enum cge_status make_filters(struct cge_logmel *lm) {
    const int nf = lm->n_freq, nm = lm->n_mels;
    double *ff = cge__malloc(sizeof(double) * (size_t)(nm + 2));
    if (!ff) return cge__err(CGE_ERR_NOMEM, "mel filters");
    double mel_min = hz_to_mel(0.0), mel_max = hz_to_mel((double)lm->sampling_rate / 2.0);
    for (int i = 0; i < nm + 2; i++)
        ff[i] = mel_to_hz(linspace(mel_min, mel_max, nm + 2, i));
    /* fft_freqs = linspace(0, sampling_rate // 2, n_freq) */
    for (int k = 0; k < nf; k++) {
        double fk = linspace(0.0, (double)(lm->sampling_rate / 2), nf, k);
        for (int m = 0; m < nm; m++) {
            double down = -(ff[m] - fk) / (ff[m + 1] - ff[m]);
            double up = (ff[m + 2] - fk) / (ff[m + 2] - ff[m + 1]);
            double v = down < up ? down : up;
            if (v < 0) v = 0;
            lm->filters[(size_t)k * nm + m] = v * (2.0 / (ff[m + 2] - ff[m]));
        }
    }
    cge__free(ff);
    for (int m = 0; m < nm; m++) {
        int lo = nf, hi = 0;
        for (int k = 0; k < nf; k++) {
            double v = lm->filters[(size_t)k * nm + m];
            lm->ft[(size_t)m * nf + k] = v;
            if (v != 0) {
                if (k < lo) lo = k;
                hi = k + 1;
            }
        }
        if (lo > hi) lo = hi = 0; /* an empty filter (too many mels for n_fft): all zero */
        lm->f_lo[m] = lo;
        lm->f_hi[m] = hi;
    }
    return CGE_OK;
}

void cge_logmel_free(struct cge_logmel *lm) {
    if (!lm) return;
    if (lm->plan) {
        pthread_mutex_lock(&fftw_planner_lock);
        fftw_destroy_plan(lm->plan);
        pthread_mutex_unlock(&fftw_planner_lock);
    }
    cge__free(lm->window);
    cge__free(lm->filters);
    cge__free(lm->ft);
    cge__free(lm->f_lo);
    cge__free(lm->f_hi);
    cge__free(lm);
}

enum cge_status cge_logmel_new(int n_mels, int sampling_rate, int n_fft, int hop_length,
                               int chunk_length, struct cge_logmel **out) {
    *out = NULL;
    if (n_mels < 1 || n_mels > 512 || sampling_rate < CGE_AUDIO_MIN_RATE ||
        sampling_rate > CGE_AUDIO_MAX_RATE || n_fft < 8 || n_fft > 65536 || hop_length < 1 ||
        hop_length > n_fft || chunk_length < 1 || chunk_length > 600)
        return cge__err(CGE_ERR_INVALID_VALUE,
                        "log-mel: feature_size %d, sampling_rate %d, n_fft %d, hop_length %d, "
                        "chunk_length %d out of range",
                        n_mels, sampling_rate, n_fft, hop_length, chunk_length);
    int64_t n_samples = (int64_t)chunk_length * sampling_rate;
    if (n_samples <= n_fft / 2)
        return cge__err(CGE_ERR_INVALID_VALUE, "log-mel: chunk of %lld samples too short",
                        (long long)n_samples);
    struct cge_logmel *lm = cge__calloc(1, sizeof *lm);
    if (!lm) return cge__err(CGE_ERR_NOMEM, "log-mel");
    lm->n_mels = n_mels;
    lm->sampling_rate = sampling_rate;
    lm->n_fft = n_fft;
    lm->hop = hop_length;
    lm->n_freq = n_fft / 2 + 1;
    lm->n_samples = n_samples;
    /* numpy: padded length n + 2·(n_fft/2); frames = 1 + (len − n_fft) // hop */
    lm->n_stft = 1 + (n_samples + 2 * (n_fft / 2) - n_fft) / hop_length;
    lm->n_frames = lm->n_stft - 1;
    lm->log_floor = log10(1e-10);
    lm->window = cge__malloc(sizeof(double) * (size_t)n_fft);
    lm->filters = cge__malloc(sizeof(double) * (size_t)lm->n_freq * (size_t)n_mels);
    lm->ft = cge__malloc(sizeof(double) * (size_t)lm->n_freq * (size_t)n_mels);
    lm->f_lo = cge__malloc(sizeof(int) * (size_t)n_mels);
    lm->f_hi = cge__malloc(sizeof(int) * (size_t)n_mels);
    if (!lm->window || !lm->filters || !lm->ft || !lm->f_lo || !lm->f_hi) {
        cge_logmel_free(lm);
        return cge__err(CGE_ERR_NOMEM, "log-mel tables");
    }
    /* np.hanning(n_fft + 1)[:-1]: 0.5 + 0.5·cos(π·k/n_fft), k = −n_fft, −n_fft+2, ... */
    for (int i = 0; i < n_fft; i++) {
        double k = (double)(2 * i - n_fft);
        lm->window[i] = 0.5 + 0.5 * cos(M_PI * k / (double)n_fft);
    }
    enum cge_status st = make_filters(lm);
    if (st != CGE_OK) {
        cge_logmel_free(lm);
        return st;
    }
    double *in = cge__malloc_aligned(sizeof(double) * (size_t)n_fft);
    fftw_complex *spec = cge__malloc_aligned(sizeof(fftw_complex) * (size_t)lm->n_freq);
    if (!in || !spec) {
        cge__free_aligned(in);
        cge__free_aligned(spec);
        cge_logmel_free(lm);
        return cge__err(CGE_ERR_NOMEM, "log-mel FFT buffers");
    }
    pthread_mutex_lock(&fftw_planner_lock);
    lm->plan = fftw_plan_dft_r2c_1d(n_fft, in, spec, FFTW_ESTIMATE);
    pthread_mutex_unlock(&fftw_planner_lock);
    cge__free_aligned(in);
    cge__free_aligned(spec);
    if (!lm->plan) {
        cge_logmel_free(lm);
        return cge__err(CGE_ERR_UNSUPPORTED, "log-mel: FFTW could not plan an FFT of %d", n_fft);
    }
    *out = lm;
    return CGE_OK;
}

int64_t cge_logmel_n_frames(const struct cge_logmel *lm) {
    return lm->n_frames;
}

int64_t cge_logmel_n_samples(const struct cge_logmel *lm) {
    return lm->n_samples;
}

int cge_logmel_n_mels(const struct cge_logmel *lm) {
    return lm->n_mels;
}

const double *cge_logmel_filters(const struct cge_logmel *lm) {
    return lm->filters;
}

enum cge_status cge_logmel_compute(const struct cge_logmel *lm, const float *samples, int64_t n,
                                   float *out) {
    const int n_fft = lm->n_fft, nf = lm->n_freq, nm = lm->n_mels, pad = n_fft / 2;
    const int64_t N = lm->n_samples, T = lm->n_frames;
    if (n < 0) n = 0;
    if (n > N) n = N;
    double *in = cge__malloc_aligned(sizeof(double) * (size_t)n_fft);
    fftw_complex *spec = cge__malloc_aligned(sizeof(fftw_complex) * (size_t)nf);
    double *power = cge__malloc(sizeof(double) * (size_t)nf);
    if (!in || !spec || !power) {
        cge__free_aligned(in);
        cge__free_aligned(spec);
        cge__free(power);
        return cge__err(CGE_ERR_NOMEM, "log-mel scratch");
    }
    float vmax = -INFINITY;
    /* The last STFT frame is dropped by Whisper, so only T frames are computed. */
    for (int64_t t = 0; t < T; t++) {
        int64_t start = t * lm->hop - pad;
        int nonzero = 0;
        for (int j = 0; j < n_fft; j++) {
            int64_t idx = start + j;
            /* reflect padding (numpy "reflect": the edge sample is not repeated) of the
             * zero-padded chunk of N samples */
            if (idx < 0) idx = -idx;
            if (idx >= N) idx = 2 * (N - 1) - idx;
            double v = (idx >= 0 && idx < n) ? (double)samples[idx] : 0.0;
            in[j] = v * lm->window[j];
            nonzero |= v != 0.0;
        }
        if (!nonzero) {
            /* silence: every power is 0, every mel is the 1e-10 floor */
            float lf = (float)lm->log_floor;
            for (int m = 0; m < nm; m++)
                out[(size_t)m * T + t] = lf;
            if (lf > vmax) vmax = lf;
            continue;
        }
        fftw_execute_dft_r2c(lm->plan, in, spec);
        for (int k = 0; k < nf; k++) {
            /* numpy keeps the spectrum as complex64, then takes |X| in float64 */
            double re = (double)(float)spec[k][0], im = (double)(float)spec[k][1];
            double a = hypot(re, im);
            power[k] = a * a;
        }
        for (int m = 0; m < nm; m++) {
            const double *f = lm->ft + (size_t)m * nf;
            double s = 0;
            for (int k = lm->f_lo[m]; k < lm->f_hi[m]; k++)
                s += f[k] * power[k];
            if (s < 1e-10) s = 1e-10;
            float v = (float)log10(s);
            out[(size_t)m * T + t] = v;
            if (v > vmax) vmax = v;
        }
    }
    cge__free_aligned(in);
    cge__free_aligned(spec);
    cge__free(power);
    /* numpy: np.maximum(log_spec, log_spec.max() - 8.0) with the threshold a float64 scalar
     * cast to float32; then (log_spec + 4.0) / 4.0 in float32. */
    float thr = (float)((double)vmax - 8.0);
    size_t total = (size_t)nm * (size_t)T;
    for (size_t i = 0; i < total; i++) {
        float v = out[i] > thr ? out[i] : thr;
        out[i] = (v + 4.0f) / 4.0f;
    }
    return CGE_OK;
}
