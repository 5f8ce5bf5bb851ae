# The sink's consumer-group membership against librdkafka's in-process mock cluster. Built from
# its own sources so that it does not depend on the rest of the sink library. The binary takes
# about a minute: every mock rebalance waits about the session timeout.
sse2kafka_unit_test(group_membership_test
  ${CMAKE_CURRENT_LIST_DIR}/group_membership_test.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/group_membership.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/embedded_cluster.cpp
  ${PROJECT_SOURCE_DIR}/daemon/sink/producer_properties.cpp)
target_include_directories(group_membership_test PRIVATE ${SSE2KAFKA_INCLUDE})
target_link_libraries(group_membership_test PRIVATE PkgConfig::RDKAFKA spdlog::spdlog Threads::Threads)
