# Writes OUTPUT, a C++ file defining `const char SYMBOL[]` (in NAMESPACE) with
# the text of INPUT: how the dashboard page is compiled into basind. Run with
# cmake -P at build time, so that editing INPUT rebuilds.
file(READ "${INPUT}" text)
string(FIND "${text}" ")BASIN_EMBED\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )BASIN_EMBED\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_text.cmake: do not edit.\n"
  "namespace ${NAMESPACE} {\n"
  "extern const char ${SYMBOL}[];\n"
  "const char ${SYMBOL}[] = R\"BASIN_EMBED(${text})BASIN_EMBED\";\n"
  "}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
