//! The routing vocabulary: which endpoint a request is for, and the static name the
//! router, the handlers' metrics and the logs know it by.

/// What a request was routed to; its name is the `route` label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ListProducts,
    GetProduct,
    GetProductStyles,
    GetRelatedProducts,
    /// `GET /products/:id/page`.
    GetProductPage,
    /// `GET /products?ids=…`.
    GetProductsById,
    /// `OPTIONS` on any path (a browser's preflight).
    Preflight,
    Healthz,
    Readyz,
    Metrics,
    /// A path the service does not have.
    Unmatched,
}

impl Endpoint {
    /// How many endpoints there are, for arrays indexed by endpoint.
    pub const COUNT: usize = Endpoint::Unmatched as usize + 1;

    /// Whether its answers are documents (one, or several joined).
    pub fn is_document(self) -> bool {
        matches!(
            self,
            Endpoint::ListProducts
                | Endpoint::GetProduct
                | Endpoint::GetProductStyles
                | Endpoint::GetRelatedProducts
                | Endpoint::GetProductPage
                | Endpoint::GetProductsById
        )
    }

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ListProducts => "list_products",
            Endpoint::GetProduct => "get_product",
            Endpoint::GetProductStyles => "get_product_styles",
            Endpoint::GetRelatedProducts => "get_related_products",
            Endpoint::GetProductPage => "get_product_page",
            Endpoint::GetProductsById => "get_products_by_id",
            Endpoint::Preflight => "preflight",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Metrics => "metrics",
            Endpoint::Unmatched => "unmatched",
        }
    }
}
