/* The floor: hooks that do nothing, so their cost is CPython's cost of calling a hook at all.
 *
 * enable()/disable(): install/remove an empty C PyEval_SetProfile callback.
 * mon_start(code, offset) / mon_return(code, offset, retval): empty builtin functions to register
 * as sys.monitoring PY_START / PY_RETURN callbacks (CPython 3.12+).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int
empty_profile(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    return 0;
}

static PyObject *
enable(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyEval_SetProfile(empty_profile, NULL);
    Py_RETURN_NONE;
}

static PyObject *
disable(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyEval_SetProfile(NULL, NULL);
    Py_RETURN_NONE;
}

static PyObject *
mon_event(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)args;
    (void)nargs;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"enable", enable, METH_NOARGS, "Install an empty C profile hook on this thread."},
    {"disable", disable, METH_NOARGS, "Remove the profile hook from this thread."},
    {"mon_start", (PyCFunction)(void (*)(void))mon_event, METH_FASTCALL, "Empty PY_START callback."},
    {"mon_return", (PyCFunction)(void (*)(void))mon_event, METH_FASTCALL, "Empty PY_RETURN callback."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ftbench_hooks", "Empty tracing hooks for the overhead floor.", -1, methods,
};

PyMODINIT_FUNC
PyInit__ftbench_hooks(void)
{
    return PyModule_Create(&module);
}
