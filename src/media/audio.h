/*
 * audio.h: audio files to mono float samples at a chosen rate, and Whisper's log-mel
 * spectrogram (WhisperFeatureExtractor, numpy path).
 *
 * Decoding is libsndfile, limited to WAV (RIFF/RIFX/RF64/BW64), Wave64, AIFF, FLAC, Ogg (Vorbis,
 * Opus, FLAC), AU and CAF by the file's first bytes (no MP3), mixdown is the mean
 * of the channels, resampling is libsamplerate's SRC_SINC_BEST_QUALITY. Every limit (channels,
 * sample rate, duration) is checked against the header before anything is allocated, and the
 * sample buffer grows with what is actually decoded, so a lying header cannot make us allocate.
 *
 * Thread safety: all functions are thread-safe. A struct cge_logmel is read-only after
 * cge_logmel_new and may be shared by any number of threads (each call owns its scratch).
 */
#ifndef CGE_MEDIA_AUDIO_H
#define CGE_MEDIA_AUDIO_H

#include "cge.h"

#include <stddef.h>
#include <stdint.h>

/* ---- limits ----------------------------------------------------------------------------------- */
#define CGE_AUDIO_MAX_CHANNELS 64
#define CGE_AUDIO_MIN_RATE     1000
#define CGE_AUDIO_MAX_RATE     768000
#define CGE_AUDIO_MAX_SECONDS  3600 /* a header claiming more is refused (CGE_ERR_INPUT_TOO_LONG) */

/* What the file's header says. */
struct cge_audio_info {
    int sample_rate; /* Hz */
    int channels;    /* 1..CGE_AUDIO_MAX_CHANNELS */
    int64_t frames;  /* frames the header announces (-1 when unknown) */
    int format;      /* libsndfile SF_FORMAT_* major|minor, for messages */
};

/* ---- decoding ----------------------------------------------------------------------------------
 * Decode into mono float samples at the file's own rate (integer PCM scaled by 1/2^(bits-1),
 * as libsndfile does: int16 / 32768). At most max_frames frames are decoded (0 = all).
 * On success *out (cge__free) holds *n_out samples, n_out >= 1.
 * Errors: CGE_ERR_IO (cannot open/read the file), CGE_ERR_UNSUPPORTED (not one of the formats
 * above, an unsupported encoding, > 64 channels, a sample rate outside 1 kHz..768 kHz),
 * CGE_ERR_SERIALIZATION (malformed or truncated data, a data chunk announcing more than the
 * file holds), CGE_ERR_INPUT_TOO_LONG (header claims
 * more than an hour), CGE_ERR_EMPTY_INPUT (no samples), CGE_ERR_INVALID_VALUE (a NaN or
 * infinite sample in a float file), CGE_ERR_NOMEM. `info` (may be NULL) gets the header. */
enum cge_status cge_audio_decode_file(const char *path, int64_t max_frames, float **out,
                                      int64_t *n_out, struct cge_audio_info *info);
/* The same from a file image held in memory (the fuzzer's entry point); `label` names it in
 * messages. The buffer is only read, never past len. */
enum cge_status cge_audio_decode_memory(const void *data, size_t len, const char *label,
                                        int64_t max_frames, float **out, int64_t *n_out,
                                        struct cge_audio_info *info);

/* ---- resampling --------------------------------------------------------------------------------
 * in (n_in samples at rate_in) → *out (cge__free), *n_out samples at rate_out, with
 * libsamplerate SRC_SINC_BEST_QUALITY (end of input flushed). Long signals are resampled in
 * aligned, overlapping pieces on up to four threads (equal to one call to float rounding).
 * Equal rates: a copy. */
enum cge_status cge_audio_resample(const float *in, int64_t n_in, int rate_in, int rate_out,
                                   float **out, int64_t *n_out);

/* The same, cut into n_pieces pieces resampled on their own threads (1 = one libsamplerate
 * call over the whole signal; short signals always use one). cge_audio_resample uses up to
 * four, one per core. Exposed for the test that compares the two. */
enum cge_status cge__audio_resample_pieces(const float *in, int64_t n_in, int rate_in, int rate_out,
                                           int n_pieces, float **out, int64_t *n_out);

/* Decode + mono + resample to `rate`. When max_seconds > 0 only the first max_seconds (plus one
 * second of context for the resampling filter) are decoded; *n_out may then exceed
 * max_seconds·rate by up to a second: callers trim. */
enum cge_status cge_audio_load(const char *path, int rate, double max_seconds, float **out,
                               int64_t *n_out);

/* The same from an encoded file held in memory (len bytes, only read); `label` names it. */
enum cge_status cge_audio_load_memory(const void *data, size_t len, const char *label, int rate,
                                      double max_seconds, float **out, int64_t *n_out);

/* ---- Whisper log-mel ----------------------------------------------------------------------------
 * WhisperFeatureExtractor._np_extract_fbank_features on one waveform, bit-for-bit in method:
 * zero-pad / trim to chunk_length·sampling_rate samples; centered STFT (reflect padding
 * n_fft/2), periodic Hann window of n_fft, hop; float64 FFT (FFTW3) rounded to complex64 as
 * numpy stores it; power |X|²; Slaney mel filters (float64, 0 .. sampling_rate/2); log10 of
 * max(·, 1e-10); last frame dropped; max(x, max − 8); (x + 4) / 4. Output (n_mels, n_frames)
 * float32, mel-major, n_frames = chunk_length·sampling_rate / hop (3000). */
struct cge_logmel;

/* Builds the filters and the FFT plan (FFTW planning is serialized by a global mutex). */
enum cge_status cge_logmel_new(int n_mels, int sampling_rate, int n_fft, int hop_length,
                               int chunk_length, struct cge_logmel **out);
void cge_logmel_free(struct cge_logmel *lm);
int64_t cge_logmel_n_frames(const struct cge_logmel *lm);  /* output frames (3000) */
int64_t cge_logmel_n_samples(const struct cge_logmel *lm); /* samples per chunk (480000) */
int cge_logmel_n_mels(const struct cge_logmel *lm);
/* The filter bank, (n_fft/2 + 1, n_mels) float64 row-major, as transformers' mel_filter_bank. */
const double *cge_logmel_filters(const struct cge_logmel *lm);
/* samples (n at the extractor's rate; n > n_samples is trimmed) → out (n_mels × n_frames).
 * CGE_ERR_NOMEM when scratch cannot be allocated. */
enum cge_status cge_logmel_compute(const struct cge_logmel *lm, const float *samples, int64_t n,
                                   float *out);

#endif /* CGE_MEDIA_AUDIO_H */
