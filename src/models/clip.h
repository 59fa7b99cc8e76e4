/*
 * clip.h: internal entry points of the CLIP family (clip.c) beyond its struct cge_family, for
 * tests and benchmarks: the vision tower on preprocessed pixels (a batch of images at once).
 *
 * The impl is read-only after load; every function here may be called from several threads.
 */
#ifndef CGE_MODELS_CLIP_H
#define CGE_MODELS_CLIP_H

#include "models/model.h"

#include <stdint.h>

extern const struct cge_family cge__family_clip;

/* Vision tower on n preprocessed images pixels (n, 3, S, S) (S = image_size).
 * Optional outputs (NULL to skip):
 *   last_hidden (n, 1 + (S/p)², d)  the encoder output (HF last_hidden_state, no post-LN);
 *   pooled      (n, d)              post_layernorm of the class token (HF pooler_output);
 *   embeds      (n, out_dim)        visual_projection(pooled) (HF image_embeds; = pooled
 *                                   when the checkpoint has no projection).
 * CGE_ERR_UNSUPPORTED_MODALITY when the checkpoint has no vision tower. */
enum cge_status cge__clip_vision_forward(const void *impl, const float *pixels, int64_t n,
                                         float *last_hidden, float *pooled, float *embeds);

/* The vision tower's input side (S) and hidden width (d); 0 when there is no vision tower. */
int64_t cge__clip_image_size(const void *impl);
int64_t cge__clip_vision_hidden(const void *impl);

#endif /* CGE_MODELS_CLIP_H */
