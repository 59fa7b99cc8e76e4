/*
 * page.h: the static documents `cge serve` answers: the HTML page at / and /docs, and the
 * OpenAPI 3.1 description at /openapi.json.
 *
 * Design: both are plain files in this folder (page.html, openapi.json), edited as what they
 * are and turned into C strings by the build (CMakeLists.txt: cge_embed_text), so the server is
 * one binary with nothing to find at run time, and the page loads nothing from elsewhere.
 */
#ifndef CGE_SERVER_PAGE_H
#define CGE_SERVER_PAGE_H

extern const char cge__page_html[];    /* src/server/page.html, NUL-terminated */
extern const char cge__openapi_json[]; /* src/server/openapi.json, NUL-terminated */

#endif /* CGE_SERVER_PAGE_H */
