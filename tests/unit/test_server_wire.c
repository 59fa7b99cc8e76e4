/*
 * test_server_wire.c: the float formatter of the servers' JSON answers (cge__wire_float9)
 * against glibc's snprintf("%.9g"), the reference it replaces: on a million random float32 bit
 * patterns, a run of consecutive floats, and the edges (zeros, subnormals, the largest float,
 * powers of ten and the values just below them, exact ties of the ninth digit), every text must
 * read back (strtof) to the same float, and be glibc's text but for at most a handful of last
 * digits past float precision. Then a vector through cge__wire_floats parses back exactly.
 */
#include "server/wire.h"
#include "testhelp.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>

static long n_checked, n_differ, n_bad;

static void one(float f) {
    char got[64], ref[64];
    size_t len = cge__wire_float9(got, f);
    snprintf(ref, sizeof ref, "%.9g", (double)f);
    n_checked++;
    if (len != strlen(got) || strtof(got, NULL) != f) {
        if (n_bad++ < 5) printf("  FAIL %a: wrote \"%s\" (%%.9g: \"%s\")\n", (double)f, got, ref);
    }
    if (strcmp(got, ref) != 0 && n_differ++ < 5)
        printf("  note: %a: \"%s\", %%.9g \"%s\"\n", (double)f, got, ref);
}

static void test_float9(void) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 1000000; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        uint32_t bits = (uint32_t)s;
        float f;
        memcpy(&f, &bits, 4);
        if (isfinite(f)) one(f);
    }
    float f = 0.0123f; /* consecutive floats, the scale of embedding components */
    for (int i = 0; i < 200000; i++, f = nextafterf(f, 1.0f)) one(f);
    const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 0.1f, 1e-4f, 9.99999e-5f, 1e-5f,
                           123456789.0f, 999999999.0f, 1e9f, 1e10f, 16777216.0f, 1610167.125f,
                           318681.3125f, FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f, -1e-45f,
                           1.17549421e-38f, 9.99999944e-11f, 0.99999994f, 9.9999999e8f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) one(edges[i]);
    for (int k = -45; k <= 38; k++) { /* powers of ten and their neighbours */
        float p = (float)pow(10.0, k);
        one(p);
        one(nextafterf(p, 0.0f));
        one(nextafterf(p, INFINITY));
    }
    printf("  %ld floats: %ld differ from %%.9g in the last digit, %ld do not round-trip\n",
           n_checked, n_differ, n_bad);
    CHECK(n_bad == 0);
    CHECK_MSG(n_differ <= 3, "%ld texts differ from glibc's %%.9g", n_differ);
    char buf[64];
    CHECK(cge__wire_float9(buf, NAN) > 0); /* not JSON, but no crash: as snprintf wrote it */
}

static void test_floats_json(void) {
    float v[1536];
    uint64_t s = 12345;
    for (int i = 0; i < 1536; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.2f;
    }
    struct cge_buf b;
    cge__buf_init(&b, (size_t)1 << 20);
    CHECK(cge__wire_floats(&b, v, 1536) == CGE_OK);
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 1536);
    int same = 0;
    for (int i = 0; j && i < cJSON_GetArraySize(j); i++)
        same += (float)cJSON_GetArrayItem(j, i)->valuedouble == v[i];
    CHECK_MSG(same == 1536, "%d of 1536 read back exactly", same);
    cJSON_Delete(j);
    cge__buf_free(&b);
}

int main(void) {
    RUN(test_float9);
    RUN(test_floats_json);
    return test_report("server_wire");
}
