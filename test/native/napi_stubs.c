// Empty stand-ins for the Node-API functions that native/*.c wrappers reference, so a kernel
// file links into a plain executable (gemv_quant_harness.c, bench/native/*.c). None is ever called there.
#define STUB(f) void f(void) {}
STUB(napi_create_function) STUB(napi_get_cb_info) STUB(napi_get_typedarray_info) STUB(napi_get_value_bool)
STUB(napi_get_value_double) STUB(napi_is_typedarray) STUB(napi_set_named_property) STUB(napi_throw_error)
STUB(napi_throw_type_error) STUB(napi_get_value_int64) STUB(napi_typeof) STUB(napi_create_double)
STUB(napi_create_string_utf8) STUB(napi_create_object)
