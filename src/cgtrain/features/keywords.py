"""Per-language names the tokenizer keeps whole (keywords, builtins, well-known library names)."""
import builtins
import keyword

_C_KEEP = """
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef
union unsigned void volatile while _Bool _Complex _Noreturn _Alignas _Alignof _Atomic
_Static_assert _Thread_local __int64 __int32 __declspec __cdecl __stdcall asm bool catch
class const_cast constexpr delete dynamic_cast explicit false friend mutable namespace new
noexcept nullptr operator private protected public reinterpret_cast static_cast
static_assert template this throw true try typeid typename using virtual wchar_t char8_t
char16_t char32_t size_t ssize_t ptrdiff_t intptr_t uintptr_t int8_t int16_t int32_t
int64_t uint8_t uint16_t uint32_t uint64_t off_t time_t FILE NULL EOF SIZE_MAX INT_MAX
INT_MIN UINT_MAX LONG_MAX LONG_MIN LLONG_MAX LLONG_MIN ULONG_MAX CHAR_MAX CHAR_MIN
CHAR_BIT SCHAR_MAX UCHAR_MAX SHRT_MAX SHRT_MIN USHRT_MAX RAND_MAX BUFSIZ FILENAME_MAX
PATH_MAX MAX_PATH TRUE FALSE BOOL DWORD HANDLE LPSTR LPCSTR LPWSTR LPCWSTR WCHAR TCHAR
INVALID_HANDLE_VALUE _snprintf _snwprintf _vsnprintf _wfopen _wcsdup _strdup _alloca
_stricmp _wcsicmp _TRUNCATE abstract boolean byte extends final finally implements
import instanceof interface native package strictfp super synchronized throws transient
String StringBuilder Integer Object System Math Runtime ProcessBuilder Thread Exception
IOException NullPointerException Class Override var val fun internal override sealed
"""
_JS_KEEP = """
break case catch class const continue debugger default delete do else export extends
false finally for function if import in instanceof let new null return super switch this
throw true try typeof var void while with yield async await of undefined NaN Infinity
JSON Object Array String Number Boolean Promise Math Date RegExp Error TypeError Symbol
Map Set WeakMap BigInt Buffer XMLHttpRequest __dirname __filename encodeURIComponent
decodeURIComponent encodeURI decodeURI parseInt parseFloat setTimeout setInterval
innerHTML outerHTML insertAdjacentHTML dangerouslySetInnerHTML localStorage
sessionStorage postMessage createElement getElementById querySelector addEventListener
readFileSync writeFileSync execSync spawnSync fromCharCode any unknown never readonly
"""
_GO_KEEP = """
break case chan const continue default defer else fallthrough for func go goto if import
interface map package range return select struct switch type var nil iota true false
append cap close copy delete len make new panic print println recover int8 int16 int32
int64 uint8 uint16 uint32 uint64 uintptr float32 float64 complex64 complex128 byte rune
"""
_RUST_KEEP = """
as async await break const continue crate dyn else enum extern false fn for if impl in
let loop match mod move mut pub ref return self Self static struct super trait true type
unsafe use where while Box Vec Option Some None Ok Err Result String Rc Arc RefCell
usize isize u8 u16 u32 u64 u128 i8 i16 i32 i64 i128 f32 f64 from_raw_parts set_len
get_unchecked transmute unwrap expect
"""
_SCRIPT_KEEP = "ARGV ENV STDIN STDOUT STDERR __FILE__ __LINE__ __dir__ nil NULL TRUE FALSE"
_PHP_KEEP = "_GET _POST _REQUEST _COOKIE _SERVER _FILES _SESSION _ENV GLOBALS NULL PDO"
_PY_KEEP = " ".join([*keyword.kwlist, *keyword.softkwlist, *dir(builtins)])
