/* Placeholder so that a module with no sources yet still builds. */
typedef int cge__empty_translation_unit;
