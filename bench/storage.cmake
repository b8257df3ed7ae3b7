# bench/storage.cmake: tq-storage-bench, the storage micro-benchmark (docs/performance-storage.md).
add_executable(tq-storage-bench ${CMAKE_CURRENT_LIST_DIR}/storage_bench.c)
target_include_directories(tq-storage-bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../tests/storage)
target_compile_options(tq-storage-bench PRIVATE ${TQ_WARNINGS})
target_link_libraries(tq-storage-bench PRIVATE tq_storage)
