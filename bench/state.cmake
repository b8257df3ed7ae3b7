# bench/state.cmake: tq-state-bench, the ticket state machine micro-benchmark
# (docs/performance-state.md). Included by bench/CMakeLists.txt. Run from a Release build.
add_executable(tq-state-bench ${CMAKE_CURRENT_LIST_DIR}/state_bench.c)
target_compile_options(tq-state-bench PRIVATE ${TQ_WARNINGS})
target_link_libraries(tq-state-bench PRIVATE tq_state)
