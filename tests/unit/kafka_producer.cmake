# The sink's Kafka producer against librdkafka's in-process mock cluster. Built from the
# producer's own sources so that it does not depend on the rest of the sink library.
sse2kafka_unit_test(kafka_producer_test
  ${CMAKE_CURRENT_LIST_DIR}/kafka_producer_test.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/kafka_producer.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/connection_problem.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/embedded_cluster.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/producer_properties.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/topic_limits.cpp)
target_include_directories(kafka_producer_test PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(kafka_producer_test PRIVATE PkgConfig::RDKAFKA OpenSSL::Crypto spdlog::spdlog Threads::Threads)
