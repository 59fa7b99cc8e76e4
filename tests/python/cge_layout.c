/*
 * cge_layout.c: prints the size and field offsets of every public struct the Python binding
 * mirrors, as the C compiler lays them out from include/cge.h, as one JSON object:
 *   {"cge_input": {"size": 112, "fields": {"text": 0, "text_len": 8, ...}}, ...}
 *
 * Key design decision: the binding's ctypes structs are checked against the compiler, never
 * against numbers written by hand. tests/unit/test_runtime_python.c includes this file and
 * hands the JSON to tests/python/test_cge.py; run alone, the Python test builds it with
 * `cc -DCGE_LAYOUT_MAIN -Iinclude`. The field lists follow cge.h's declarations in order; a
 * field missing here or in the binding shows up as a size or field-set mismatch.
 */
#include "cge.h"

#include <stddef.h>
#include <stdio.h>

#define F(s, f) fprintf(out, "%s\"%s\": %zu", first_++ ? ", " : "", #f, offsetof(struct s, f))
#define S(s, ...)                                                                       \
    do {                                                                                \
        int first_ = 0;                                                                 \
        fprintf(out, "%s\"%s\": {\"size\": %zu, \"fields\": {", n_++ ? ",\n " : "", #s, \
                sizeof(struct s));                                                      \
        __VA_ARGS__;                                                                    \
        fprintf(out, "}}");                                                             \
    } while (0)

static void cge_layout_print(FILE *out) {
    int n_ = 0;
    fprintf(out, "{");
    S(cge_slot_info, F(cge_slot_info, slot); F(cge_slot_info, name); F(cge_slot_info, hf_id);
      F(cge_slot_info, family); F(cge_slot_info, dim); F(cge_slot_info, max_tokens);
      F(cge_slot_info, modalities); F(cge_slot_info, pooling); F(cge_slot_info, normalize);
      F(cge_slot_info, dtype));
    S(cge_input, F(cge_input, text); F(cge_input, text_len); F(cge_input, is_code);
      F(cge_input, language); F(cge_input, role); F(cge_input, instruction); F(cge_input, ids);
      F(cge_input, n_ids); F(cge_input, image_path); F(cge_input, image_data);
      F(cge_input, image_len); F(cge_input, audio_path); F(cge_input, audio_data);
      F(cge_input, audio_len));
    S(cge_model_params, F(cge_model_params, dtype); F(cge_model_params, pooling);
      F(cge_model_params, no_truncate); F(cge_model_params, max_seq_len);
      F(cge_model_params, backend));
    S(cge_embed_info, F(cge_embed_info, status); F(cge_embed_info, truncated);
      F(cge_embed_info, n_tokens); F(cge_embed_info, errmsg));
    S(cge_engine_params, F(cge_engine_params, n_threads); F(cge_engine_params, cache);
      F(cge_engine_params, no_truncate); F(cge_engine_params, slot_timeout_ms);
      F(cge_engine_params, preload); F(cge_engine_params, batching);
      F(cge_engine_params, max_batch_size); F(cge_engine_params, max_batch_tokens);
      F(cge_engine_params, max_wait_ms); F(cge_engine_params, max_queue); F(cge_engine_params, n_workers);
      F(cge_engine_params, memory_budget_bytes); F(cge_engine_params, max_concurrent_loads);
      F(cge_engine_params, swap_timeout_ms); F(cge_engine_params, redis_url);
      F(cge_engine_params, backend));
    S(cge_slot_result, F(cge_slot_result, state); F(cge_slot_result, status);
      F(cge_slot_result, dim); F(cge_slot_result, vector); F(cge_slot_result, latency_us);
      F(cge_slot_result, n_tokens); F(cge_slot_result, truncated); F(cge_slot_result, cached);
      F(cge_slot_result, version); F(cge_slot_result, errmsg));
    S(cge_result, F(cge_result, status); F(cge_result, errmsg); F(cge_result, dim);
      F(cge_result, embedding); F(cge_result, n_experts); F(cge_result, expert_weights);
      F(cge_result, top_k); F(cge_result, selected); F(cge_result, present); F(cge_result, slots);
      F(cge_result, cached); F(cge_result, latency_us); F(cge_result, n_tokens));
    S(cge_embed_options, F(cge_embed_options, slots); F(cge_embed_options, no_fusion);
      F(cge_embed_options, no_cache); F(cge_embed_options, timeout_ms));
    S(cge_slot_stats, F(cge_slot_stats, state); F(cge_slot_stats, path); F(cge_slot_stats, path2);
      F(cge_slot_stats, dtype); F(cge_slot_stats, dim); F(cge_slot_stats, version);
      F(cge_slot_stats, resident_bytes); F(cge_slot_stats, load_ms); F(cge_slot_stats, requests);
      F(cge_slot_stats, failures); F(cge_slot_stats, mean_latency_ms);
      F(cge_slot_stats, p95_latency_ms); F(cge_slot_stats, queue_depth); F(cge_slot_stats, errmsg);
      F(cge_slot_stats, batches); F(cge_slot_stats, mean_batch); F(cge_slot_stats, padding);
      F(cge_slot_stats, max_batch));
    S(cge_engine_stats, F(cge_engine_stats, requests); F(cge_engine_stats, inputs);
      F(cge_engine_stats, failures); F(cge_engine_stats, cache_hits);
      F(cge_engine_stats, cache_misses); F(cge_engine_stats, cache_entries);
      F(cge_engine_stats, cache_hit_rate); F(cge_engine_stats, in_flight);
      F(cge_engine_stats, slots); F(cge_engine_stats, redis_hits);
      F(cge_engine_stats, redis_misses); F(cge_engine_stats, redis_corrupt);
      F(cge_engine_stats, redis_errors); F(cge_engine_stats, redis_puts));
    /* The enums the binding passes as C int. */
    fprintf(out, ",\n \"enum\": {\"size\": %zu, \"fields\": {}}", sizeof(enum cge_status));
    fprintf(out, "}\n");
}

#undef F
#undef S

#ifdef CGE_LAYOUT_MAIN
int main(void) {
    cge_layout_print(stdout);
    return 0;
}
#endif
