"""calcjax: finite differences against autodiff in JAX -- how accurate, how fast, on your hardware.

The public names load lazily (PEP 562): ``import calcjax`` alone imports no JAX, so
the command line and ``calcjax report`` work where JAX is not installed.
"""

import importlib as _importlib
import typing as _typing

__version__ = "0.1.0"

#: public name -> the module that defines it
_HOMES = {
    **dict.fromkeys(
        (
            "SECOND_ORDER_METHODS",
            "SecondOrderMethod",
            "get_second_order_method",
            "register_second_order",
        ),
        "calcjax._second_order",
    ),
    **dict.fromkeys(
        (
            "complex_step_hessian",
            "hessian",
            "hessian_diagonal",
            "hessian_vector_product",
            "ravel_hessian",
            "richardson_hessian",
            "richardson_hessian_vector_product",
            "second_default_step",
        ),
        "calcjax._hessian",
    ),
    **dict.fromkeys(
        (
            "forward_gradient",
            "gaussian_smoothing_gradient",
            "spall_gain",
            "spsa_gradient",
        ),
        "calcjax._estimators",
    ),
    **dict.fromkeys(("CheckRow", "GradientCheck", "assert_gradient", "check_gradient"), "calcjax._check"),
    "compare": "calcjax._compare",
    "compare_second_order": "calcjax._compare_second",
    "check_complex_step": "calcjax._complex_safety",
    "complex_step_culprits": "calcjax._complex_safety",
    "DescentResult": "calcjax._descent",
    "gradient_descent": "calcjax._descent",
    **dict.fromkeys(
        (
            "Estimate",
            "Stencil",
            "auto_batch_size",
            "default_step",
            "derivative",
            "directional_derivative",
            "gradient",
            "stencil",
        ),
        "calcjax._finite_diff",
    ),
    "DomainWarning": "calcjax._domain",
    "complex_step_derivative": "calcjax._complex_step",
    "complex_step_gradient": "calcjax._complex_step",
    "richardson_derivative": "calcjax._richardson",
    "richardson_gradient": "calcjax._richardson",
    **dict.fromkeys(("METHODS", "GradientMethod", "get_method", "register"), "calcjax._methods"),
    **dict.fromkeys(("PROBLEMS", "Instance", "Problem", "get_problem"), "calcjax._problems"),
}

__all__ = [
    "METHODS",
    "PROBLEMS",
    "SECOND_ORDER_METHODS",
    "CheckRow",
    "DescentResult",
    "DomainWarning",
    "Estimate",
    "GradientCheck",
    "GradientMethod",
    "Instance",
    "Problem",
    "SecondOrderMethod",
    "Stencil",
    "__version__",
    "assert_gradient",
    "auto_batch_size",
    "check_complex_step",
    "check_gradient",
    "compare",
    "compare_second_order",
    "complex_step_culprits",
    "complex_step_derivative",
    "complex_step_gradient",
    "complex_step_hessian",
    "default_step",
    "derivative",
    "directional_derivative",
    "forward_gradient",
    "gaussian_smoothing_gradient",
    "get_method",
    "get_problem",
    "get_second_order_method",
    "gradient",
    "gradient_descent",
    "hessian",
    "hessian_diagonal",
    "hessian_vector_product",
    "ravel_hessian",
    "register",
    "register_second_order",
    "richardson_derivative",
    "richardson_gradient",
    "richardson_hessian",
    "richardson_hessian_vector_product",
    "second_default_step",
    "spall_gain",
    "spsa_gradient",
    "stencil",
]


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'calcjax' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if _typing.TYPE_CHECKING:
    from calcjax._check import CheckRow, GradientCheck, assert_gradient, check_gradient
    from calcjax._compare import compare
    from calcjax._compare_second import compare_second_order
    from calcjax._complex_safety import check_complex_step, complex_step_culprits
    from calcjax._complex_step import complex_step_derivative, complex_step_gradient
    from calcjax._descent import DescentResult, gradient_descent
    from calcjax._domain import DomainWarning
    from calcjax._estimators import forward_gradient, gaussian_smoothing_gradient, spall_gain, spsa_gradient
    from calcjax._finite_diff import (
        Estimate,
        Stencil,
        auto_batch_size,
        default_step,
        derivative,
        directional_derivative,
        gradient,
        stencil,
    )
    from calcjax._hessian import (
        complex_step_hessian,
        hessian,
        hessian_diagonal,
        hessian_vector_product,
        ravel_hessian,
        richardson_hessian,
        richardson_hessian_vector_product,
        second_default_step,
    )
    from calcjax._methods import METHODS, GradientMethod, get_method, register
    from calcjax._problems import PROBLEMS, Instance, Problem, get_problem
    from calcjax._richardson import richardson_derivative, richardson_gradient
    from calcjax._second_order import (
        SECOND_ORDER_METHODS,
        SecondOrderMethod,
        get_second_order_method,
        register_second_order,
    )
