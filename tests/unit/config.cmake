# The config loader: YAML into the typed Config, defaults, environment references, and every
# kind of problem with its file:line:col. Also loads the sample configs under config/.
if(TARGET sse2kafka_config)
  sse2kafka_unit_test(config_test ${CMAKE_CURRENT_LIST_DIR}/config_test.cpp)
  target_link_libraries(config_test PRIVATE sse2kafka_config)
  target_compile_definitions(config_test PRIVATE SSE2KAFKA_SAMPLE_CONFIG_DIR="${PROJECT_SOURCE_DIR}/config")
endif()
