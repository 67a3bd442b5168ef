"""Five backward passes to write: replace each ``raise NotImplementedError`` with your code.

Each function receives ``dout``, the gradient of the loss with respect to the layer's output,
and the cache that the project's forward pass returned, and returns the gradients of the
forward's inputs in the forward's order. Grade them from the repository root with

    python -m exercises.grade                  # all five
    python -m exercises.grade fc_backward      # only the ones named

or, in a notebook, ``from exercises.grade import grade; grade("fc_backward", fc_backward)``.
The answers are in layers/ (the functions of the same names): look only once yours pass,
or once you are stuck.
"""


def fc_backward(dout, cache):
    """Gradients of out = x @ W + b (layers/fc.py's fc_forward).

    dout (N, M); cache = (x (N, D), W (D, M)).
    Returns dx (N, D), dW (D, M), db (M,).
    Hint: each gradient has the shape of what it is the gradient of; let the shapes tell you
    where the transposes go.
    """
    raise NotImplementedError("fc_backward: write dx, dW and db")


def relu_backward(dout, cache):
    """Gradient of out = max(x, 0) (layers/activations.py's relu_forward).

    dout any shape; cache = out of the forward, shaped like dout (out > 0 exactly where x > 0).
    Returns dx shaped like dout (take the slope at x == 0 to be 0).
    """
    raise NotImplementedError("relu_backward: write dx")


def conv_backward_naive(dout, cache):
    """Gradients of a convolution, with plain loops (layers/conv_naive.py's conv_forward_naive).

    out[n, f, i, j] = sum over c, ki, kj of xp[n, c, i*S + ki, j*S + kj] * W[f, c, ki, kj] + b[f],
    xp being x with P zeros around each map.
    dout (N, F, Ho, Wo); cache = (x (N, C, H, W), W (F, C, KH, KW), S, P, groups), groups == 1.
    Returns dx (N, C, H, W), dW (F, C, KH, KW), db (F,).
    Hint: loop over n, f, i, j as the forward does; each output touched one window of xp.
    """
    raise NotImplementedError("conv_backward_naive: write dx, dW and db")


def maxpool_backward_naive(dout, cache):
    """Gradient of max pooling (layers/pool.py's maxpool_forward_naive).

    dout (N, C, Ho, Wo); cache = MaxPoolCache(x_shape, size, stride, argmax), argmax (N, C, Ho, Wo)
    holding, for each window, the row-major index i * size + j of its first maximum.
    Returns dx of shape x_shape.
    """
    raise NotImplementedError("maxpool_backward_naive: write dx")


def batchnorm_backward(dout, cache):
    """Gradients of training-mode batch norm (layers/batchnorm.py's batchnorm_forward, train=True).

    out = gamma * xhat + beta, xhat = (x - mean) / sqrt(var + eps), mean and var per channel
    over the m = N (or N * H * W) values of that channel in the batch.
    dout shaped like x, (N, C) or (N, C, H, W); cache = BatchNormCache(xhat, gamma (C,),
    inv_std (1, C) or (1, C, 1, 1) = 1 / sqrt(var + eps), train=True).
    Returns dx shaped like x, dgamma (C,), dbeta (C,).
    Hint: mean and var depend on every x of the channel, so dx has three terms.
    """
    raise NotImplementedError("batchnorm_backward: write dx, dgamma and dbeta")
