# The admin endpoints (ops layer: snapshots, rendering, readiness, the HTTP server) and the
# librdkafka statistics they show, which the producer summarises; the producer is built from its
# own sources, as in kafka_producer.cmake. promtool (Debian: prometheus) checks the exposition
# when it is installed.
if(TARGET sse2kafka_ops)
  sse2kafka_unit_test(metrics_test
    ${CMAKE_CURRENT_LIST_DIR}/metrics_test.cpp
    ${PROJECT_SOURCE_DIR}/daemon/sink/kafka_producer.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/connection_problem.cpp
    ${PROJECT_SOURCE_DIR}/daemon/sink/embedded_cluster.cpp
    ${PROJECT_SOURCE_DIR}/daemon/sink/producer_properties.cpp)
  target_link_libraries(metrics_test PRIVATE sse2kafka_ops PkgConfig::RDKAFKA OpenSSL::Crypto)
endif()
