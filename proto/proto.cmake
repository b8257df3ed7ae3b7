# tq_proto: the generated protobuf-c code for ticketq.proto plus the frame codec.
# The generated sources are compiled with relaxed warnings (they are not ours).
set(TQ_PROTO_GEN ${CMAKE_CURRENT_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${TQ_PROTO_GEN})
add_custom_command(
  OUTPUT ${TQ_PROTO_GEN}/ticketq.pb-c.c ${TQ_PROTO_GEN}/ticketq.pb-c.h
  COMMAND ${PROTOC_C} --proto_path=${CMAKE_CURRENT_SOURCE_DIR} --c_out=${TQ_PROTO_GEN}
          ${CMAKE_CURRENT_SOURCE_DIR}/ticketq.proto
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/ticketq.proto
  COMMENT "protoc-c ticketq.proto")
add_library(tq_proto_gen STATIC ${TQ_PROTO_GEN}/ticketq.pb-c.c)
target_include_directories(tq_proto_gen PUBLIC ${TQ_PROTO_GEN})
target_link_libraries(tq_proto_gen PUBLIC PkgConfig::PROTOBUFC)
set_target_properties(tq_proto_gen PROPERTIES POSITION_INDEPENDENT_CODE ON)

add_library(tq_proto STATIC frame.c)
target_include_directories(tq_proto PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_options(tq_proto PRIVATE ${TQ_WARNINGS} ${TQ_LAYOUT_WARNINGS})
target_link_libraries(tq_proto PUBLIC tq_proto_gen tq_common)
set_target_properties(tq_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)
