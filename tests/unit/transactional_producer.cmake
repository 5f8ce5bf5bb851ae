# The sink producer's transactions against librdkafka's in-process mock cluster. Built from the
# producer's own sources, as kafka_producer.cmake is.
sse2kafka_unit_test(transactional_producer_test
  ${CMAKE_CURRENT_LIST_DIR}/transactional_producer_test.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/kafka_producer.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/connection_problem.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/embedded_cluster.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/producer_properties.cpp)
target_include_directories(transactional_producer_test PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(transactional_producer_test PRIVATE PkgConfig::RDKAFKA OpenSSL::Crypto spdlog::spdlog Threads::Threads)
