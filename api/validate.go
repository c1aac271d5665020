package api

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/go-playground/validator/v10"
)

// roomNameRE is the shape of a room name: it appears in URLs (/whip/{room})
// and logs, so only characters that need no escaping, at most 64 of them.
var roomNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ValidRoomName reports whether name is a valid room name.
func ValidRoomName(name string) bool { return roomNameRE.MatchString(name) }

// Validator is the single validator shared by every request body. Build it
// once with NewValidator; it is safe for concurrent use.
type Validator struct {
	v *validator.Validate
}

// NewValidator returns a validator whose errors name JSON fields and which
// knows pinhole's custom tags (roomname).
func NewValidator() *Validator {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		if name == "" {
			return f.Name
		}
		return name
	})
	// Registration only fails for an empty tag or nil func.
	_ = v.RegisterValidation("roomname", func(fl validator.FieldLevel) bool {
		return ValidRoomName(fl.Field().String())
	})
	return &Validator{v: v}
}

// Struct validates s and returns a 400 *Error naming each bad field, or nil.
func (v *Validator) Struct(s any) error {
	err := v.v.Struct(s)
	if err == nil {
		return nil
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return Internal(fmt.Errorf("validate: %w", err))
	}
	fields := make([]FieldError, 0, len(verrs))
	for _, fe := range verrs {
		fields = append(fields, FieldError{Field: fieldPath(fe), Message: message(fe)})
	}
	return Invalid(fields...)
}

// fieldPath drops the Go struct name from the namespace:
// "CreateRoomRequest.metadata[k]" becomes "metadata[k]".
func fieldPath(fe validator.FieldError) string {
	ns := fe.Namespace()
	if _, rest, ok := strings.Cut(ns, "."); ok {
		return rest
	}
	return fe.Field()
}

// message turns a failed tag into a sentence a person can act on.
func message(fe validator.FieldError) string {
	unit := "characters"
	switch fe.Kind() {
	case reflect.Map, reflect.Slice, reflect.Array:
		unit = "entries"
	}
	switch fe.Tag() {
	case "required":
		return "is required"
	case "roomname":
		return "must be 1 to 64 letters, digits, '.', '_' or '-'"
	case "oneof":
		return "must be one of: " + strings.ReplaceAll(fe.Param(), " ", ", ")
	case "max":
		return fmt.Sprintf("must be at most %s %s", fe.Param(), unit)
	case "min":
		return fmt.Sprintf("must be at least %s %s", fe.Param(), unit)
	case "len":
		return fmt.Sprintf("must be exactly %s %s", fe.Param(), unit)
	default:
		if fe.Param() != "" {
			return fmt.Sprintf("failed %s=%s", fe.Tag(), fe.Param())
		}
		return "failed " + fe.Tag()
	}
}
