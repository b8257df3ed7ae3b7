# bench/ticketq.cmake: ticketq-bench (issue 5): histograms, workload generator, open/closed-loop
# drivers, the Redis peer, ticketq itself (peer_ticketq.c over libticketq), the disk probe.
# Included by bench/CMakeLists.txt. The PostgreSQL peer is SQL + pgbench scripts
# (bench/peers/pg), orchestrated by bench/peers/run-peers.sh.
set(TQ_BENCH_DIR ${CMAKE_CURRENT_LIST_DIR})

add_library(tq_bench STATIC
  ${TQ_BENCH_DIR}/hist.c
  ${TQ_BENCH_DIR}/workload.c
  ${TQ_BENCH_DIR}/openloop.c
  ${TQ_BENCH_DIR}/peer_redis.c
  ${TQ_BENCH_DIR}/peer_ticketq.c)
target_include_directories(tq_bench PUBLIC ${TQ_BENCH_DIR})
target_compile_options(tq_bench PRIVATE ${TQ_WARNINGS})
target_link_libraries(tq_bench PUBLIC tq_common ticketq_static m)

add_executable(ticketq-bench ${TQ_BENCH_DIR}/bench_main.c)
target_compile_options(ticketq-bench PRIVATE ${TQ_WARNINGS})
target_link_libraries(ticketq-bench PRIVATE tq_bench)

add_executable(ticketq-diskprobe ${TQ_BENCH_DIR}/diskprobe.c)
target_compile_options(ticketq-diskprobe PRIVATE ${TQ_WARNINGS} ${TQ_LAYOUT_WARNINGS})
target_link_libraries(ticketq-diskprobe PRIVATE tq_common)

# The full peer comparison is opt-in (it installs and starts PostgreSQL and Redis):
#   cmake --build <dir> --target bench-peers
# ticketq runs with the ticketqd of the same build (its server/ target must exist).
if(TARGET ticketqd)
  add_custom_target(bench-peers
    COMMAND bash ${TQ_BENCH_DIR}/peers/run-peers.sh --bench-bin $<TARGET_FILE:ticketq-bench>
            --probe-bin $<TARGET_FILE:ticketq-diskprobe> --ticketqd-bin $<TARGET_FILE:ticketqd>
    DEPENDS ticketq-bench ticketq-diskprobe ticketqd
    USES_TERMINAL)
else()
  add_custom_target(bench-peers
    COMMAND bash ${TQ_BENCH_DIR}/peers/run-peers.sh --bench-bin $<TARGET_FILE:ticketq-bench>
            --probe-bin $<TARGET_FILE:ticketq-diskprobe> --systems "pg-fn pg-plain redis"
    DEPENDS ticketq-bench ticketq-diskprobe
    USES_TERMINAL)
endif()
