"""calcjax: finite differences against autodiff in JAX -- how accurate, how fast, on your hardware."""

from calcjax._compare import compare
from calcjax._complex_safety import check_complex_step, complex_step_culprits
from calcjax._descent import DescentResult, gradient_descent
from calcjax._finite_diff import (
    Estimate,
    Stencil,
    auto_batch_size,
    complex_step_derivative,
    complex_step_gradient,
    default_step,
    derivative,
    directional_derivative,
    gradient,
    richardson_derivative,
    richardson_gradient,
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
from calcjax._second_order import (
    SECOND_ORDER_METHODS,
    SecondOrderMethod,
    get_second_order_method,
    register_second_order,
)

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "PROBLEMS",
    "SECOND_ORDER_METHODS",
    "DescentResult",
    "Estimate",
    "GradientMethod",
    "Instance",
    "Problem",
    "SecondOrderMethod",
    "Stencil",
    "__version__",
    "auto_batch_size",
    "check_complex_step",
    "compare",
    "complex_step_culprits",
    "complex_step_derivative",
    "complex_step_gradient",
    "complex_step_hessian",
    "default_step",
    "derivative",
    "directional_derivative",
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
    "stencil",
]
