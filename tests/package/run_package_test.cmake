# Builds tests/package/consumer twice: against an installed quamba (find_package) and against
# the source tree (add_subdirectory). Fails on the first step that fails.
function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} --install ${QUAMBA_BINARY_DIR} --prefix ${prefix})

foreach(mode find_package subdirectory)
  set(bdir ${WORK_DIR}/build_${mode})
  run_step(${CMAKE_COMMAND} -S ${QUAMBA_SOURCE_DIR}/tests/package/consumer -B ${bdir} -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DQUAMBA_CONSUMER_MODE=${mode}
    -DQUAMBA_SOURCE_DIR=${QUAMBA_SOURCE_DIR} -DQUAMBA_ENABLE_CUDA=OFF)
  run_step(${CMAKE_COMMAND} --build ${bdir})
  run_step(${bdir}/quamba_consumer)
endforeach()
