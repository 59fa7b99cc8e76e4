/*
 * whisper.h: the Whisper encoder family's internal entry points beyond the family vtable, for
 * tests and benchmarks: the encoder on precomputed log-mel features, and the embedding of
 * samples already at the feature extractor's rate.
 *
 * The impl pointer is what cge__family_whisper.load returns; it is read-only after load and may
 * be shared by threads (every call allocates its own scratch).
 */
#ifndef CGE_MODELS_WHISPER_H
#define CGE_MODELS_WHISPER_H

#include "models/model.h"

#include <stdint.h>

extern const struct cge_family cge__family_whisper;

/* Encoder input frames (3000) and output frames (1500) for this model. */
int64_t cge__whisper_n_frames_in(const void *impl);
int64_t cge__whisper_n_frames_out(const void *impl);
int64_t cge__whisper_d_model(const void *impl);
/* Samples per encoder output frame at the extractor's rate (2 · hop = 320). */
int64_t cge__whisper_samples_per_frame(const void *impl);
int cge__whisper_sampling_rate(const void *impl);

/* mel (n_mels, n_frames_in) → hidden (n_frames_out, d_model): the encoder's last_hidden_state
 * (after encoder.layer_norm). */
enum cge_status cge__whisper_encode(const void *impl, const float *mel, float *hidden);

/* samples (n at the extractor's rate) → log-mel → encoder → mean over the first
 * min(n_frames_out, ceil(n / samples_per_frame)) frames → out (d_model).
 * CGE_ERR_EMPTY_INPUT for n <= 0. */
enum cge_status cge__whisper_embed_samples(const void *impl, const float *x, int64_t n, float *out);

#endif /* CGE_MODELS_WHISPER_H */
