# server/server.cmake: ticketqd (included by server/CMakeLists.txt).
# tq_server_core is everything but main(): the integration tests and the fuzz target link it
# to drive the dispatcher directly.
set(TQ_SERVER_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(tq_server_core STATIC
  ${TQ_SERVER_DIR}/auth.c
  ${TQ_SERVER_DIR}/compaction.c
  ${TQ_SERVER_DIR}/config.c
  ${TQ_SERVER_DIR}/conn.c
  ${TQ_SERVER_DIR}/dispatch.c
  ${TQ_SERVER_DIR}/events_codec.c
  ${TQ_SERVER_DIR}/loop.c
  ${TQ_SERVER_DIR}/metrics.c
  ${TQ_SERVER_DIR}/prefault.c
  ${TQ_SERVER_DIR}/reqdec.c
  ${TQ_SERVER_DIR}/respenc.c
  ${TQ_SERVER_DIR}/sha256.c
  ${TQ_SERVER_DIR}/snapshot.c
  ${TQ_SERVER_DIR}/subscribe.c)
get_filename_component(TQ_SERVER_ROOT ${TQ_SERVER_DIR} DIRECTORY)
target_include_directories(tq_server_core PUBLIC ${TQ_SERVER_DIR} ${TQ_SERVER_ROOT})
target_compile_options(tq_server_core PRIVATE ${TQ_WARNINGS})
find_package(Threads REQUIRED) # online compaction's helper thread
target_link_libraries(tq_server_core PUBLIC tq_state tq_storage tq_proto PkgConfig::URING
                      tq_common Threads::Threads)
# The events record and the hash are byte-layout code.
set_source_files_properties(${TQ_SERVER_DIR}/events_codec.c ${TQ_SERVER_DIR}/sha256.c
                            ${TQ_SERVER_DIR}/respenc.c ${TQ_SERVER_DIR}/reqdec.c
                            PROPERTIES COMPILE_OPTIONS "${TQ_LAYOUT_WARNINGS}")

add_executable(ticketqd ${TQ_SERVER_DIR}/main.c)
target_compile_options(ticketqd PRIVATE ${TQ_WARNINGS})
target_link_libraries(ticketqd PRIVATE tq_server_core)
set_target_properties(ticketqd PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/server)
install(TARGETS ticketqd RUNTIME DESTINATION bin)

# Fuzzing builds: instrument the server code for libFuzzer's coverage feedback (the fuzz
# targets in tests/fuzz link it); without this the fuzzer is blind to the dispatcher.
if(TQ_FUZZ)
  target_compile_options(tq_server_core PRIVATE -fsanitize=fuzzer-no-link)
endif()
