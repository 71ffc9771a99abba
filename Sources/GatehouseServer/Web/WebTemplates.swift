import Mustache

/// The web inbox's Mustache templates and style sheet, kept as files in `Web/Templates/` and
/// embedded in the binary by the package (`.embedInCode`), so `gatehouse serve` needs no files
/// beside it. `{{name}}` escapes HTML; the only unescaped value is `{{{content}}}` in the layout,
/// which is a page this library rendered (and escaped) itself.
enum WebTemplates {
    static func library() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, bytes) in templates { try library.register(String(decoding: bytes, as: UTF8.self), named: name) }
        return library
    }

    static let templates: [(String, [UInt8])] = [
        ("layout", PackageResources.layout_mustache), ("sign-in", PackageResources.sign_in_mustache),
        ("request-rows", PackageResources.request_rows_mustache), ("inbox", PackageResources.inbox_mustache),
        ("request", PackageResources.request_mustache), ("requests", PackageResources.requests_mustache),
        ("grants", PackageResources.grants_mustache), ("audit", PackageResources.audit_mustache),
        ("break-glass", PackageResources.break_glass_mustache), ("error", PackageResources.error_mustache),
        ("slack-link", PackageResources.slack_link_mustache),
    ]

    static let css = String(decoding: PackageResources.gatehouse_css, as: UTF8.self)
}
