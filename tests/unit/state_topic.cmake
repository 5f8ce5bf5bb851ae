# The sink's state topic (checkpoints in Kafka) against librdkafka's mock cluster and a small
# fake broker for the Admin API calls the mock lacks, and the common client properties.
sse2kafka_unit_test(state_topic_test ${CMAKE_CURRENT_LIST_DIR}/state_topic_test.cpp)
target_link_libraries(state_topic_test PRIVATE sse2kafka_sink)

sse2kafka_unit_test(client_properties_test ${CMAKE_CURRENT_LIST_DIR}/client_properties_test.cpp)
target_link_libraries(client_properties_test PRIVATE sse2kafka_sink)

# What a Kafka connection error means for the user (authentication, TLS, protocol mismatch).
sse2kafka_unit_test(connection_problem_test ${CMAKE_CURRENT_LIST_DIR}/connection_problem_test.cpp)
target_link_libraries(connection_problem_test PRIVATE sse2kafka_sink)
